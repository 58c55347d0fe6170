r"""age-tf-benchmark: the unified age-estimation benchmark's protocol (CVPR 2024) in one command.

Five subject-exclusive splits of the dataset's ten folders: train, select on validation,
test; every model also tested on the whole of every other dataset; MAE and CS@5 as mean ±
std over the splits, beside the median and ridge-on-pixels baselines.

Examples:
  # Offline, on synthetic releases in the benchmark's format (4 minutes on 2 CPU cores):
  age-tf-benchmark --config=benchmark_demo --out_dir=runs/benchmark_demo
  # Real data (the benchmark's database files and the images they list), on a GPU machine:
  age-tf-benchmark --config=benchmark --database=/data/AgeDB.json --images_dir=/data \
      --other_databases=/data/FG-Net_aligned.json --out_dir=runs/agedb
Rerunning the same command resumes: finished steps are skipped.
"""

import dataclasses

from age_tf import protocol_config
from age_tf.cli import common

COMMAND = common.Command(__name__, protocol_config.BenchmarkConfig, required=("out_dir",),
                         exclude=protocol_config.EXCLUDED)


def main(cfg, args):
    from age_tf import benchmark  # TensorFlow: loaded for the work, not for --help
    from age_tf.train import distribution

    cfg.train = dataclasses.replace(cfg.train, flags_text=COMMAND.flags_text())
    distribution.split_cpu(cfg.train.num_cpu_devices)
    strategy = distribution.get_strategy(cfg.train.strategy)
    return benchmark.summary(benchmark.run_benchmark(cfg, strategy))


run = COMMAND.entry_point(main)
