"""age-tf-evaluate: a trained run on a split -> predictions, metrics with CIs, Figures 4-8.

Example:
  age-tf-evaluate --model_dir=runs/demo/runs/mobilenet_v2_full --data_dir=runs/demo/data
"""

from age_tf.cli import common
from age_tf.evaluate.evaluate_config import EvaluateConfig

COMMAND = common.Command(__name__, EvaluateConfig, required=("model_dir", "data_dir"))


def main(cfg, args):
    from age_tf.evaluate import evaluation  # TensorFlow: for the work, not for --help

    return evaluation.summary(evaluation.evaluate(cfg))


run = COMMAND.entry_point(main)
