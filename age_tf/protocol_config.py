"""The protocols' configurations (age-tf-experiment, age-tf-benchmark) and how each of their
runs is configured from the base training config and a run config: light on purpose, no
TensorFlow, so their --help and flag errors come in a second."""

from __future__ import annotations

import dataclasses
import os

from age_tf import config, labels
from age_tf.config import field
from age_tf.data.sources import facebase
from age_tf.train import train_config

STUDY_RUNS = ("mobilenet_v2_head", "mobilenet_v2_full", "efficientnet_b3_head", "efficientnet_b3_full")


# Fields of the base training config that each run sets itself.
EXCLUDED = ("data_dir", "model_dir")


@dataclasses.dataclass
class ExperimentConfig:
    """What `age-tf-experiment` runs: data, the runs, evaluation, audit, report.

    The runs derive from `train` (the base) by the flags of their run configs.
    """

    out_dir: str = field(None, "Everything is written here (raw/, data/, runs/, figures/, "
                         "report.md).")
    mat: str | None = field(None, "Real imdb.mat / wiki.mat; without it, synthetic data is "
                            "generated.")
    images_dir: str | None = field(None, "The crops folder of --mat.")
    num_images: int = field(6000, low=100,
                            help="Synthetic rows to generate (6,000: ~475 test faces, PLCC "
                                 "intervals about +-0.06).")
    sample_fraction: float = field(0.5, low=0, high=1, low_open=True,
                                   help="Share of filtered images kept (the study: half).")
    runs: tuple[str, ...] = field(STUDY_RUNS, "Run configs (shipped names or paths): each sets "
                                  "a few training flags over the base; NAME@HEAD trains it "
                                  "with that --head (run NAME_HEAD).")
    feature_cache_for_head: bool = field(True, "Head-mode runs train from cached features.")
    # A trained head first, then every layer: better rows in fewer epochs on the demo
    # (measured in docs/measurement_history.md).
    full_from_head_epochs: int = field(2, low=0,
                                       help="Full-tuning runs start from the same backbone's "
                                            "head-only run in --runs (a trained head, then every "
                                            "layer: Keras' transfer-learning recipe, --init_from) "
                                            "and train this many epochs; 0: from a random head for "
                                            "--epochs, as the study did.")
    bootstrap: int = field(1000, low=0, help="Bootstrap resamples for the intervals.")
    audit_run: str | None = field(None, "Run to audit (default: the first head-mode run).")
    cleaning: bool = field(True, "Synthetic data: Table 3, the audit run retrained on cleaned "
                           "labels (dropped / relabelled suspects) and on the rendered ages, "
                           "all scored against the rendered test ages.")
    clean_sigmas: float = field(3.0, low=0, low_open=True,
                                help="Cleaning threshold (see age-tf-clean --sigmas).")
    # Two CPU cores run two trainings faster than one twice as fast: one run's graph keeps
    # ~1.2 cores busy (its Python and input steps between ops).
    parallel_runs: int = field(0, low=0, high=2, help="Chains of runs (a head-only run and "
                               "the all-layers run that starts from it) trained at once: 2, "
                               "the other chains in a second process; 1, one after another; "
                               "0: 2 on a machine without a GPU and a one-device --strategy, "
                               "else 1.")
    train: train_config.TrainConfig = field(default_factory=train_config.TrainConfig)

    def validate(self) -> None:
        """Checks every flag and every run's config before any work (ValueError names it)."""
        if self.mat and not self.images_dir:
            raise ValueError("--mat needs --images_dir (the folder of its face crops)")
        for rc in run_configs(self).values():
            rc.model.validate()


def run_configs(cfg: ExperimentConfig) -> dict[str, train_config.TrainConfig]:
    """Every run's training config by run name, in --runs order; with
    --full_from_head_epochs, each full-tuning run starts from the head-only run of its
    backbone listed before it; with --feature_cache_for_head, head-only runs train from
    cached backbone features.

    Raises:
      ValueError: a full-tuning run has no such head run, or too few epochs for its warmup.
    """
    runs = {}
    for spec in cfg.runs:
        rc = run_config(cfg, spec)
        runs[os.path.basename(rc.model_dir)] = rc
    if cfg.feature_cache_for_head:
        # One store for the whole experiment: the audit, the cleaning and Table 3's retrains
        # see the audited head run's images through the same frozen backbone.
        runs = {n: dataclasses.replace(rc, feature_cache=True, feature_store=feature_store(cfg))
                if rc.model.tune == "head" else rc for n, rc in runs.items()}
    if cfg.full_from_head_epochs <= 0:
        return runs
    # A full run starts from the head-only run of its backbone and head (the same layers).
    heads: dict[tuple[str, str], train_config.TrainConfig] = {}
    for name, rc in runs.items():
        key = (rc.model.backbone, rc.model.head)
        if rc.model.tune == "head":
            heads.setdefault(key, rc)
            continue
        head = heads.get(key)
        if head is None:
            raise ValueError(f"--full_from_head_epochs={cfg.full_from_head_epochs}: run {name} "
                             f"has no head-only {rc.model.backbone} run with --head="
                             f"{rc.model.head} before it in --runs; list one first, or pass "
                             "--full_from_head_epochs=0")
        if rc.warmup_epochs >= cfg.full_from_head_epochs:
            raise ValueError(f"--full_from_head_epochs={cfg.full_from_head_epochs} must exceed "
                             f"run {name}'s --warmup_epochs={rc.warmup_epochs}")
        runs[name] = dataclasses.replace(
            rc, init_from=head.model_dir, epochs=cfg.full_from_head_epochs,
            flags_text=rc.flags_text + f"# --full_from_head_epochs\n--init_from={head.model_dir}\n"
            f"--epochs={cfg.full_from_head_epochs}\n")
    return runs


def feature_store(cfg: ExperimentConfig) -> str:
    """The experiment's backbone feature store ('' without --feature_cache_for_head)."""
    return os.path.join(cfg.out_dir, "features") if cfg.feature_cache_for_head else ""


def run_config(cfg: ExperimentConfig, spec: str) -> train_config.TrainConfig:
    """The base training config with run `spec`'s own flags applied, training on the
    experiment's data into runs/<name> (see configure_run)."""
    return configure_run(cfg.train, spec, os.path.join(cfg.out_dir, "data"),
                         os.path.join(cfg.out_dir, "runs"))


def configure_run(base: train_config.TrainConfig, spec: str, data_dir: str,
                  runs_dir: str) -> train_config.TrainConfig:
    """`base` with run `spec`'s own flags applied (its includes aside: the base is the
    command line's), on data_dir, into runs_dir/<run name>. A shipped run config by name,
    or a path; NAME@HEAD also sets --head (train_config.HEAD_NAMES).

    Raises:
      ValueError: an unknown head after @ (naming --runs).
    """
    name, _, head = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if head and head not in train_config.HEAD_NAMES:
        raise ValueError(f"--runs: {spec!r} asks for head {head!r}; choose one of "
                         f"{list(train_config.HEAD_NAMES)}")
    lines = config.own_flags(config.resolve_config(name)) + ([f"--head={head}"] if head else [])
    run = config.apply_flag_lines(base, lines, exclude=EXCLUDED)
    run_name = os.path.basename(name).removesuffix(".cfg") + (f"_{head}" if head else "")
    return dataclasses.replace(
        run, data_dir=data_dir, model_dir=os.path.join(runs_dir, run_name),
        flags_text=run.flags_text + f"# run config {spec}\n" + "\n".join(lines) + "\n")


SPLITS = tuple(range(len(facebase.BENCHMARK_SPLITS)))


@dataclasses.dataclass
class BenchmarkConfig:
    """What `age-tf-benchmark` runs: the data, the splits, the runs and heads."""

    out_dir: str = field(None, "Everything is written here (raw/, data/, runs/, "
                         "benchmark.md, benchmark.json); a rerun resumes.")
    database: str | None = field(None, "The benchmark's database file of the dataset trained "
                                 "on (e.g. AgeDB.json). Without it, a synthetic release in "
                                 "that format is written and used (offline).")
    images_dir: str | None = field(None, "The folder --database's img_path entries start "
                                   "from (default: the file's folder).")
    other_databases: tuple[str, ...] = field((), "Database files of the datasets every model "
                                             "is also tested on, whole (e.g. FG-Net_aligned."
                                             "json), comma-separated.")
    other_images_dirs: tuple[str, ...] = field((), "Their image folders, in the same order "
                                               "(default: each file's folder).")
    splits: tuple[int, ...] = field(SPLITS, "Which of the five splits to run (0-4).")
    runs: tuple[str, ...] = field(("mobilenet_v2_head",), "Run configs (shipped names or "
                                  "paths), each trained on every split.")
    heads: tuple[str, ...] = field(("regression",), "Heads (train/heads.py), each with every "
                                   "run: one table row per run and head.")
    num_images: int = field(1500, low=100, help="Synthetic data: rows of the release trained "
                            "on (the other dataset gets a third as many).")
    max_roll: float = field(30.0, low=0, high=45, help="Synthetic data: faces turned in-plane "
                            "by up to this many degrees (alignment undoes it).")
    max_age: int = field(101, low=1, high=150, help="Oldest age kept (AgeDB's oldest face is "
                         "101; the benchmark keeps every age its files give).")
    feature_cache_for_head: bool = field(True, "Head-mode runs train from cached features "
                                         "(one store for every split: the same images).")
    bootstrap: int = field(200, low=0, help="Bootstrap resamples for each test's intervals.")
    parallel_runs: int = field(0, low=0, high=2, help="Splits run at once, in two processes when 2 "
                               "(every other split in the second); 0: 2 on a machine without "
                               "a GPU and a one-device --strategy, else 1.")
    train: train_config.TrainConfig = field(default_factory=train_config.TrainConfig)

    def validate(self) -> None:
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"--splits takes split numbers 0-4, got {list(self.splits)}")
        if self.other_images_dirs and len(self.other_images_dirs) != len(self.other_databases):
            raise ValueError(f"--other_images_dirs has {len(self.other_images_dirs)} folders for "
                             f"{len(self.other_databases)} --other_databases; give one each, or "
                             "none")
        if self.images_dir and not self.database:
            raise ValueError("--images_dir goes with --database (without it the data are "
                             "synthetic)")
        for path in (self.database, *self.other_databases):
            if path and not os.path.isfile(path):
                raise ValueError(f"{path}: no such database file")
        for spec in self.run_specs():
            configure_run(self.train, spec, "", "").model.validate()
        over = [h for h in self.heads if h != "regression"]
        if over and self.max_age > labels.MAX_CLASS_AGE:
            raise ValueError(
                f"--heads={','.join(over)}: the distribution and ordinal heads have classes "
                f"0-{labels.MAX_CLASS_AGE}, and --max_age={self.max_age} keeps older "
                f"faces; pass --max_age={labels.MAX_CLASS_AGE} (AgeDB loses its one "
                "101-year-old) or use --heads=regression")

    def run_specs(self) -> list[str]:
        """Each run with each head (NAME@HEAD; the regression head as the plain name)."""
        return [run if head == "regression" else f"{run}@{head}"
                for run in self.runs for head in self.heads]
