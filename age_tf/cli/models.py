"""age-tf-models: the study's Table 1 (params, trainable params per mode, GMACs / GFLOPs).

Example:
  age-tf-models --sizes=native,256
"""

from age_tf.cli import common
from age_tf.evaluate.evaluate_config import ModelCostConfig

COMMAND = common.Command(__name__, ModelCostConfig)


def main(cfg, args):
    from age_tf.evaluate import model_cost  # TensorFlow: for the work, not for --help

    table = model_cost.model_cost_markdown(
        model_cost.model_cost(list(cfg.backbones), cfg.resolved_sizes(), list(cfg.head_units)))
    if cfg.output:
        with open(cfg.output, "w") as f:
            f.write(table)
    return table


run = COMMAND.entry_point(main)
