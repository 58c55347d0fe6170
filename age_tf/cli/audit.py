"""age-tf-audit: suspected mislabels (held-out disagreement) and surviving near duplicates.

Example:
  age-tf-audit --model_dir=runs/demo/runs/mobilenet_v2_head --data_dir=runs/demo/data \
      --truth_csv=runs/demo/raw/ground_truth.csv
"""

import json

from age_tf import config
from age_tf.cli import common
from age_tf.evaluate import audit

CONFIG, EXCLUDE = audit.AuditConfig, ()
SPECS = config.define_flags(CONFIG, required=("model_dir", "data_dir"))


def main(argv):
    common.no_positional_args(argv)
    print(json.dumps(audit.audit(config.from_flags(CONFIG)), indent=2))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
