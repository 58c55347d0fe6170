"""age-tf-train: fine-tune a backbone for age regression (any tf.distribute strategy).

Example:
  age-tf-train --config=demo --data_dir=runs/demo/data --model_dir=runs/demo/one_run
Run the same command again after a crash: it resumes from the last completed epoch.
"""

import dataclasses

from age_tf.cli import common
from age_tf.train import train_config

COMMAND = common.Command(__name__, train_config.TrainConfig, required=("data_dir", "model_dir"))


def main(cfg, args):
    from age_tf.train import distribution, training  # TensorFlow: for the work, not --help

    cfg = dataclasses.replace(cfg, flags_text=COMMAND.flags_text())
    distribution.split_cpu(cfg.num_cpu_devices)
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TF work.
    result = training.train_and_evaluate(cfg, distribution.get_strategy(cfg.strategy))
    return training.summary(result, cfg.model_dir)


run = COMMAND.entry_point(main)
