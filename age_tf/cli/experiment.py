r"""age-tf-experiment: the study end to end — data, four runs, evaluation, audit, report.

Examples:
  # Offline demo on synthetic data (6 to 14 minutes on 2 CPU cores):
  age-tf-experiment --config=demo --out_dir=runs/demo
  # The study on real IMDB-WIKI data, on a GPU machine:
  age-tf-experiment --config=study --mat=/data/imdb/imdb.mat --images_dir=/data/imdb/imdb_crop \
      --out_dir=runs/study
Rerunning the same command resumes: finished steps are skipped, runs resume from checkpoints.
"""

import dataclasses

from age_tf import protocol_config
from age_tf.cli import common

COMMAND = common.Command(__name__, protocol_config.ExperimentConfig, required=("out_dir",),
                         exclude=protocol_config.EXCLUDED)


def main(cfg, args):
    from age_tf import experiment  # TensorFlow: loaded for the work, not for --help
    from age_tf.train import distribution

    cfg.train = dataclasses.replace(cfg.train, flags_text=COMMAND.flags_text())
    distribution.split_cpu(cfg.train.num_cpu_devices)
    strategy = distribution.get_strategy(cfg.train.strategy)
    return experiment.summary(experiment.run_experiment(cfg, strategy))


run = COMMAND.entry_point(main)
