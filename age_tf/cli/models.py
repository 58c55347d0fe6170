"""age-tf-models: the study's Table 1 (params, trainable params per mode, GMACs / GFLOPs).

Example:
  age-tf-models --sizes=native,256
"""

from age_tf import config
from age_tf.cli import common
from age_tf.train import models

CONFIG, EXCLUDE = models.Table1Config, ()
SPECS = config.define_flags(CONFIG)


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(models.Table1Config)
    table = models.table1_markdown(
        models.table1(list(cfg.backbones), cfg.resolved_sizes(), list(cfg.head_units)))
    print(table)
    if cfg.output:
        with open(cfg.output, "w") as f:
            f.write(table)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
