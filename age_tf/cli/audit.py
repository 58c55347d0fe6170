"""age-tf-audit: suspected mislabels (held-out disagreement) and surviving near duplicates.

Example:
  age-tf-audit --model_dir=runs/demo/mobilenet_v2_head --data_dir=runs/demo/data \
      --truth=runs/demo/raw/ground_truth.csv
"""

from __future__ import annotations

import json

from absl import flags

from age_tf import audit
from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished age-tf-train run (a head-mode run is best).")
flags.DEFINE_string("data_dir", None, "Output folder of age-tf-prepare.")
flags.DEFINE_string("out_dir", None, "Default: <model_dir>/audit.")
flags.DEFINE_integer("folds", 5, "Cross-fitting folds (by identity) for held-out predictions.")
flags.DEFINE_integer("gallery", 24, "Faces in the suspects gallery.")
flags.DEFINE_string("truth", None, "Synthetic ground_truth.csv: report precision@k.")
flags.DEFINE_integer("seed", 0, "Fold assignment.")
flags.mark_flags_as_required(["model_dir", "data_dir"])


def main(argv):
    common.no_positional_args(argv)
    summary = audit.audit(FLAGS.model_dir, FLAGS.data_dir, FLAGS.out_dir, FLAGS.folds,
                          FLAGS.gallery, FLAGS.truth, seed=FLAGS.seed)
    print(json.dumps(summary, indent=2))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
