"""age-tf-evaluate: a trained run on a split -> predictions, metrics with CIs, Figures 4-8.

Example:
  age-tf-evaluate --model_dir=runs/demo/runs/mobilenet_v2_full --data_dir=runs/demo/data
"""

from age_tf.cli import common
from age_tf.evaluate import evaluation

COMMAND = common.Command(__name__, evaluation.EvaluateConfig, required=("model_dir", "data_dir"))


def main(cfg, args):
    return evaluation.summary(evaluation.evaluate(cfg))


run = COMMAND.entry_point(main)
