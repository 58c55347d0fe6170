r"""age-tf-audit: suspected mislabels (held-out disagreement) and surviving near duplicates.

Example:
  age-tf-audit --model_dir=runs/demo/runs/mobilenet_v2_head --data_dir=runs/demo/data \
      --truth_csv=runs/demo/raw/ground_truth.csv
"""

import json

from age_tf.cli import common
from age_tf.evaluate.evaluate_config import AuditConfig

COMMAND = common.Command(__name__, AuditConfig, required=("model_dir", "data_dir"))


def main(cfg, args):
    from age_tf.evaluate import audit  # TensorFlow: loaded for the work, not for --help

    return json.dumps(audit.audit(cfg), indent=2)


run = COMMAND.entry_point(main)
