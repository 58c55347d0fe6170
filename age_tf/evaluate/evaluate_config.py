"""The evaluation commands' configurations (age-tf-evaluate, -report, -cross-dataset, -audit,
-clean, -models): light on purpose, no TensorFlow, so their --help and flag errors come in a
second."""

from __future__ import annotations

import dataclasses
import os

from age_tf import decisions, fileio
from age_tf.config import field
from age_tf.data import prepared
from age_tf.train.train_config import BACKBONE_NAMES


@dataclasses.dataclass
class EvaluateConfig:
    """What `age-tf-evaluate` evaluates (the arguments of `evaluate`)."""

    model_dir: str = field(None, "A finished age-tf-train run directory.")
    data_dir: str = field(None, "Output folder of age-tf-prepare.")
    split: str = field("test", "Which manifest to evaluate.", choices=("train", "val", "test"))
    bootstrap: int = field(1000, low=0,
                           help="Bootstrap resamples (over people) for the intervals (0: none).")
    gallery_max: int = field(24, low=0, help="Most faces in the large-error gallery.")
    seed: int = field(0, "Seeds the bootstrap and the 15-20 year sample.")
    ground_truth: str | None = field(None, "ground_truth.csv of a synthetic set: also score "
                                     "against the rendered ages (what the faces show).")
    thresholds: tuple[float, ...] = field(decisions.DEFAULT_THRESHOLDS, "Age thresholds "
                                          "(years) whose decisions are scored: false-over and "
                                          "false-under rates, share uncertain, Challenge-(T+7).")
    decision_error: float = field(decisions.DEFAULT_ERROR, low=0, high=0.5, low_open=True,
                                  high_open=True, help="The error rate the decisions are "
                                  "calibrated to (as age-tf-predict's --decision_error).")
    decision_band: float | None = decisions.band_field()
    other_data: bool = field(False, "Evaluate on a prepared folder that is not the run's own "
                             "(another dataset): written to eval/other/<folder>/, with a "
                             "warning for each image the run trained on. Without it such a "
                             "folder is refused.")


@dataclasses.dataclass
class ReportConfig:
    """What `age-tf-report` writes."""

    runs: tuple[str, ...] = field(None, "Evaluated run directories, one Table 2 row each.")
    out: str = field(None, "Where to write report.md.")
    data_dir: str | None = field(None, "Prepared data (adds the age-distribution figure).")
    baselines: str | None = field(None, "A baselines.json (age-tf-experiment writes one) to "
                                  "put beside the runs in Table 2.")
    overwrite: bool = field(False, "Replace an existing --out report.")

    def validate(self) -> None:
        if os.path.isdir(self.out):
            raise ValueError(f"--out={self.out!r} is a folder; name the report file, e.g. "
                             f"{os.path.join(self.out, 'report.md')}")
        fileio.check_new_file(self.out, "out", self.overwrite)


@dataclasses.dataclass
class CrossConfig:
    """The runs and the prepared folders of `age-tf-cross-dataset`."""

    model_dirs: tuple[str, ...] = field((), "Finished age-tf-train runs, comma-separated.")
    data_dirs: tuple[str, ...] = field((), "Prepared folders (age-tf-prepare) whose test "
                                       "splits every run is scored on, comma-separated.")
    out: str = field(None, "Where to write the table (Markdown; a .json beside it).")
    bootstrap: int = field(1000, low=0, help="Bootstrap resamples for the intervals (0: none).")
    seed: int = field(0, "Seeds the bootstrap.")
    overwrite: bool = field(False, "Replace an existing --out table (and its .json).")

    def validate(self) -> None:
        if not self.model_dirs or not self.data_dirs:
            raise ValueError("--model_dirs and --data_dirs each need at least one folder")
        for flag, folders in (("model_dirs", self.model_dirs), ("data_dirs", self.data_dirs)):
            real = [os.path.realpath(d) for d in folders]
            twice = sorted({d for d, r in zip(folders, real) if real.count(r) > 1})
            if twice:
                raise ValueError(f"--{flag} lists {', '.join(twice)} more than once (the same "
                                 "folder); give each once")
        for d in self.data_dirs:  # every folder checked before any is evaluated
            folder = prepared.PreparedDir(d)
            if not folder.exists():
                raise ValueError(f"--data_dirs: {d} is not an age-tf-prepare output folder "
                                 f"(no {prepared.REPORT})")
            if not os.path.isfile(folder.manifest_path("test")):
                raise ValueError(f"--data_dirs: {d} has no test split "
                                 f"({folder.manifest_path('test')} not found)")
        fileio.check_new_file(self.out, "out", self.overwrite,
                              (os.path.splitext(self.out)[0] + ".json",))


FEATURE_STORE_HELP = ("A folder of stored backbone features (age-tf-train --feature_store): "
                      "images already there are not run through the backbone again ('': none).")


@dataclasses.dataclass
class AuditConfig:
    """What `age-tf-audit` audits (the arguments of `audit`)."""

    model_dir: str = field(None, "A finished age-tf-train run (a head-mode run is best).")
    data_dir: str = field(None, "Output folder of age-tf-prepare.")
    out_dir: str | None = field(None, "Default: <model_dir>/audit.")
    folds: int = field(5, low=2, help="Cross-fitting folds (by identity) for held-out predictions.")
    gallery: int = field(24, low=0, help="Faces in the suspects gallery.")
    truth_csv: str | None = field(None, "Synthetic ground_truth.csv: report precision@k.")
    mislabel_years: float = field(20.0, low=0, low_open=True,
                                  help="A label this far from the true age counts as wrong (with "
                                       "--truth_csv).")
    seed: int = field(0, "Fold assignment.")
    workers: int | None = field(None, low=1, help="Image-check processes (default: all cores).")
    feature_store: str = field("", FEATURE_STORE_HELP)
    # Pairs above a fixed similarity grow as n^2 among look-alike faces: the list is for a
    # person to read, its total is counted whatever its length.
    max_duplicate_pairs: int = field(1000, low=0,
                                     help="Near-duplicate pairs listed in near_duplicate_pairs.csv"
                                          ", the most similar first (all are counted in "
                                          "audit.json).")


ACTIONS = ("drop", "relabel")


@dataclasses.dataclass
class CleanConfig:
    """What `age-tf-clean` writes (the arguments of `clean`)."""

    model_dir: str = field(None, "A finished run whose backbone judges the labels (a head-mode "
                           "run: its backbone never saw these labels).")
    data_dir: str = field(None, "Output folder of age-tf-prepare (read only).")
    out_dir: str = field(None, "The cleaned prepared-data folder (new; train with "
                         "--data_dir=<it>).")
    # Default from the demo's Table 3: relabelling recovered more of the noisy-to-oracle
    # gap than dropping (MAE: 1.19 vs 0.83 of it), and keeps every image.
    action: str = field("relabel", "What to do with a suspect: drop the image, or relabel it "
                        "with its held-out prediction.", choices=ACTIONS)
    sigmas: float = field(3.0, low=0, low_open=True, help="Suspect: |held-out residual| > "
                          "sigmas x the robust std of the residuals at that predicted age.")
    folds: int = field(5, low=2, help="Cross-fitting folds (by identity).")
    seed: int = field(0, "Fold assignment.")
    overwrite: bool = field(False, "Replace a cleaned folder already in --out_dir.")
    feature_store: str = field("", FEATURE_STORE_HELP)

    def validate(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"--action must be one of {ACTIONS}, got {self.action!r}")
        fileio.check_writable_dir(self.out_dir, "out_dir")
        if os.path.abspath(self.out_dir) == os.path.abspath(self.data_dir):
            raise ValueError("--out_dir must differ from --data_dir: cleaning never edits the "
                             "prepared data in place")


@dataclasses.dataclass
class ModelCostConfig:
    """What `age-tf-models` lists."""

    backbones: tuple[str, ...] = field(BACKBONE_NAMES,
                                       "Registered backbones to list.")
    sizes: tuple[str, ...] = field(("native", "256"), "Input sizes; 'native' is each backbone's "
                                   "published size (224 / 300).")
    head_units: tuple[int, ...] = field((512, 128), "Hidden units of the GELU head.")
    output: str | None = field(None, "Also write the markdown table to this file.")
    overwrite: bool = field(False, "Replace an existing --output file.")

    def validate(self) -> None:
        if self.output:
            fileio.check_new_file(self.output, "output", self.overwrite)

    def resolved_sizes(self) -> list[int | None]:
        """Raises ValueError naming the flag for an unknown backbone or size."""
        unknown = [b for b in self.backbones if b not in BACKBONE_NAMES]
        if unknown:
            raise ValueError(f"--backbones: unknown {unknown}; registered: {list(BACKBONE_NAMES)}")
        try:
            return [None if s == "native" else int(s) for s in self.sizes]
        except ValueError as e:
            raise ValueError(f"--sizes takes integers or 'native', got {list(self.sizes)}") from e
