r"""age-tf-clean: a cleaned copy of prepared data (train/val suspects dropped or relabelled).

Example:
  age-tf-clean --model_dir=runs/demo/runs/mobilenet_v2_head --data_dir=runs/demo/data \
      --out_dir=runs/demo/data_clean
  age-tf-train --config=demo --data_dir=runs/demo/data_clean --model_dir=runs/demo/cleaned
The test split is copied unchanged; <out_dir>/changes.csv lists every change.
"""

import json

from age_tf.cli import common
from age_tf.evaluate.evaluate_config import CleanConfig

COMMAND = common.Command(__name__, CleanConfig, required=("model_dir", "data_dir", "out_dir"))


def main(cfg, args):
    from age_tf.evaluate import clean  # TensorFlow: loaded for the work, not for --help

    return json.dumps(clean.clean(cfg), indent=2)


run = COMMAND.entry_point(main)
