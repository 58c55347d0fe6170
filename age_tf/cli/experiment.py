"""age-tf-experiment: the study end to end — data, four runs, evaluation, audit, report.

Examples:
  # Offline demo on synthetic data (about 15 minutes on 2 CPU cores):
  age-tf-experiment --config=demo --out_dir=runs/demo
  # The study on real IMDB-WIKI data, on a GPU machine:
  age-tf-experiment --config=study --mat=/data/imdb/imdb.mat --images_dir=/data/imdb/imdb_crop \
      --out_dir=runs/study
Rerunning the same command resumes: finished steps are skipped, runs resume from checkpoints.
"""

import dataclasses

from age_tf import config, experiment
from age_tf.cli import common
from age_tf.train import distribution

CONFIG, EXCLUDE = experiment.ExperimentConfig, experiment.EXCLUDED
SPECS = config.define_flags(CONFIG, required=("out_dir",), exclude=EXCLUDE)


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(CONFIG, exclude=EXCLUDE)
    cfg.train = dataclasses.replace(cfg.train, flags_text=config.flags_text(SPECS))
    cfg.validate()  # every run's flags checked before any work
    distribution.split_cpu(cfg.train.num_cpu_devices)
    strategy = distribution.get_strategy(cfg.train.strategy)
    print(experiment.summary(experiment.run_experiment(cfg, strategy)))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
