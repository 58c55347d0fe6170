"""age-tf-experiment: the study end to end — data, four runs, evaluation, audit, report.

Examples:
  # Offline demo on synthetic data (about 15 minutes on 2 CPU cores):
  age-tf-experiment --flagfile=configs/demo.cfg --out_dir=runs/demo
  # The study on real IMDB-WIKI data, on a GPU machine:
  age-tf-experiment --flagfile=configs/study.cfg --mat=/data/imdb/imdb.mat \
      --images_dir=/data/imdb/imdb_crop --out_dir=runs/study
Rerunning the same command resumes: finished steps are skipped, runs resume from checkpoints.
"""

from __future__ import annotations

import os

from absl import flags

import age_tf
from age_tf import distribution, experiment
from age_tf.cli import common, train_flags
from age_tf.data import synth

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Everything is written here.")
flags.DEFINE_string("mat", None, "Real imdb.mat / wiki.mat; without it, synthetic data is generated.")
flags.DEFINE_string("images_dir", None, "The crops folder of --mat.")
flags.DEFINE_integer("num_images", 3000, "Synthetic rows to generate.")
flags.DEFINE_float("sample_fraction", 0.5, "Share of filtered images kept (the study: half).")
flags.DEFINE_list("runs", list(experiment.STUDY_RUNS),
                  "Run configs (configs/<name>.cfg): each overrides a few training flags.")
flags.DEFINE_string("configs_dir", None, "Folder of the run configs (default: ./configs, or the "
                    "source tree's).")
flags.DEFINE_integer("standin_epochs", 8, "With --weights=none: pretrain each backbone this many "
                     "epochs on a separate synthetic set first (0: random weights).")
flags.DEFINE_integer("standin_images", 1500, "Rows of the stand-in pretraining set.")
flags.DEFINE_bool("feature_cache_for_head", True, "Head-mode runs train from cached features.")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples for the CIs.")
flags.mark_flag_as_required("out_dir")


def _configs_dir() -> str:
    if FLAGS.configs_dir:
        return FLAGS.configs_dir
    for candidate in ("configs", os.path.join(os.path.dirname(age_tf.__file__), "..", "configs")):
        if os.path.isdir(candidate):
            return candidate
    raise ValueError("no configs/ folder found; pass --configs_dir")


def run_overrides(name: str) -> list[tuple[str, str]]:
    """The flags a run config sets itself (its --flagfile line aside)."""
    path = os.path.join(_configs_dir(), f"{name}.cfg")
    if not os.path.exists(path):
        raise ValueError(f"--runs: {path} not found")
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("--") and not line.startswith("--flagfile"):
            key, eq, value = line[2:].partition("=")
            if not eq:  # boolean forms: --flag, --noflag
                key, value = (key[2:], "false") if key.startswith("no") and key not in FLAGS else (key, "true")
            if key not in FLAGS:
                raise ValueError(f"{path} sets unknown flag --{key}")
            out.append((key, value))
    return out


def _builder(name: str):
    overrides = run_overrides(name)

    def build(data_dir: str, model_dir: str):
        # The run's own flags (backbone, tune, learning rate) override the command line's:
        # they are what makes it that run. Build the config, then restore the flags.
        saved = {k: FLAGS[k].value for k, _ in overrides}
        try:
            for k, v in overrides:
                FLAGS[k].parse(v)  # parse() sets the flag's value
            return train_flags.config_from_flags(data_dir, model_dir)
        finally:
            for k, v in saved.items():
                FLAGS[k].value = v

    return build


def main(argv):
    common.no_positional_args(argv)
    if FLAGS.mat and not FLAGS.images_dir:
        raise ValueError("--mat needs --images_dir (the folder of its face crops)")
    builders = {name: _builder(name) for name in FLAGS.runs}
    cfg = experiment.ExperimentConfig(
        out_dir=FLAGS.out_dir, run_configs=builders, mat=FLAGS.mat, images_dir=FLAGS.images_dir,
        synth=synth.SynthConfig(num_images=FLAGS.num_images, seed=FLAGS.seed),
        prepare_kwargs={"sample_fraction": FLAGS.sample_fraction, "seed": FLAGS.seed},
        standin_epochs=FLAGS.standin_epochs, standin_images=FLAGS.standin_images,
        feature_cache_for_head=FLAGS.feature_cache_for_head, bootstrap=FLAGS.bootstrap)
    for build in builders.values():  # every run's flags checked before any work
        build(os.path.join(FLAGS.out_dir, "data"), os.path.join(FLAGS.out_dir, "runs", "x")).model.validate()
    distribution.split_cpu(FLAGS.num_cpu_devices)
    strategy = distribution.get_strategy(FLAGS.strategy)
    result = experiment.run_experiment(cfg, strategy)
    print("\nTable 2 (test set)\n" + result["table2"])
    print(f"report: {os.path.abspath(result['report'])}  ({result['seconds'] / 60:.1f} min)")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
