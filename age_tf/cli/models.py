"""age-tf-models: the study's Table 1 (params, trainable params per mode, GMACs / GFLOPs).

Example:
  age-tf-models --sizes=native,256
"""

from age_tf import config
from age_tf.cli import common
from age_tf.train import model_cost

CONFIG, EXCLUDE = model_cost.ModelCostConfig, ()
SPECS = config.define_flags(CONFIG)


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(CONFIG)
    table = model_cost.model_cost_markdown(
        model_cost.model_cost(list(cfg.backbones), cfg.resolved_sizes(), list(cfg.head_units)))
    print(table)
    if cfg.output:
        with open(cfg.output, "w") as f:
            f.write(table)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
