"""age-tf-evaluate: test-set predictions, metrics (with bootstrap CIs) and the study's figures.

Example:
  age-tf-evaluate --model_dir=runs/demo/mobilenet_v2_head --data_dir=runs/demo/data --split=test
"""

from __future__ import annotations

import json

from absl import flags

from age_tf import evaluation
from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished age-tf-train run directory.")
flags.DEFINE_string("data_dir", None, "Output folder of age-tf-prepare.")
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Which manifest to evaluate.")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples for the PLCC/SROCC intervals (0: none).")
flags.DEFINE_integer("gallery_max", 24, "Most faces in the large-error gallery.")
flags.DEFINE_integer("seed", 0, "Seeds the bootstrap and the 15-20 year sample.")
flags.mark_flags_as_required(["model_dir", "data_dir"])


def main(argv):
    common.no_positional_args(argv)
    m = evaluation.evaluate(FLAGS.model_dir, FLAGS.data_dir, FLAGS.split, FLAGS.bootstrap,
                            FLAGS.gallery_max, FLAGS.seed)
    keys = ("loss", "mae_years", "rmse_years", "plcc", "srocc", "cs5", "plcc_ci95", "srocc_ci95")
    print(json.dumps({k: m[k] for k in keys if k in m}, indent=2))
    print(f"wrote {FLAGS.model_dir}/eval/")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
