"""age-tf-models: the study's Table 1 (params, MACs/FLOPs) for the registered backbones.

Example:
  age-tf-models --sizes=native,256 --output=runs/table1.md
"""

from __future__ import annotations

from absl import flags

from age_tf import models
from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_list("backbones", sorted(models.BACKBONES), "Registered backbones to list.")
flags.DEFINE_list("sizes", ["native", "256"],
                  "Input sizes; 'native' is each backbone's published size (224 / 300).")
flags.DEFINE_list("head_units", ["512", "128"], "Hidden units of the head's Dense layers.")
flags.DEFINE_string("output", None, "Also write the markdown table to this file.")


def main(argv):
    common.no_positional_args(argv)
    unknown = [b for b in FLAGS.backbones if b not in models.BACKBONES]
    if unknown:
        raise ValueError(f"--backbones: unknown {unknown}; registered: {sorted(models.BACKBONES)}")
    try:
        sizes = [None if s == "native" else int(s) for s in FLAGS.sizes]
    except ValueError as e:
        raise ValueError(f"--sizes takes integers or 'native', got {FLAGS.sizes}") from e
    table = models.table1_markdown(
        models.table1(FLAGS.backbones, sizes, [int(u) for u in FLAGS.head_units]))
    print(table)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(table)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
