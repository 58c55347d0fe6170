"""The configuration of one training run (the flags of age-tf-train) and its checks."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from age_tf import config, fileio
from age_tf.config import field
from age_tf.data import pipeline, prepared, sources
from age_tf.train import distribution, models
from age_tf.train.run_dir import RunDir
from age_tf.train.schedules import LR_SCHEDULES

MONITORS = {"val_loss": "min", "val_mae_years": "min", "val_plcc": "max", "val_srocc": "max"}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs (the flags of `age-tf-train`)."""

    data_dir: str = field(None, "Output folder of age-tf-prepare (train.csv, val.csv).")
    model_dir: str = field(None, "Run directory: checkpoints, logs, export (resumed if present).")
    model: models.ModelConfig = field(default_factory=models.ModelConfig)
    pipeline: pipeline.PipelineConfig = field(default_factory=pipeline.PipelineConfig)
    epochs: int = field(10, low=1, help="Epochs to train in all (a resumed run continues).")
    learning_rate: float = field(1e-3, low=0, low_open=True, help="Peak Adam learning rate.")
    lr_schedule: str = field("cosine", "Learning-rate decay.", choices=LR_SCHEDULES)
    lr_decay_rate: float = field(0.9, low=0, high=1, low_open=True,
                                 help="Per-epoch factor for --lr_schedule=exponential.")
    min_lr_ratio: float = field(0.01, low=0, high=1,
                                help="Cosine decay ends at --learning_rate times this.")
    warmup_epochs: float = field(0.0, low=0, help="Linear warmup length (epochs).")
    monitor: str = field("val_srocc", "Validation metric for the best model and early "
                         "stopping.", choices=sorted(MONITORS))
    early_stopping_patience: int = field(0, low=0,
                                         help="Stop after this many epochs without improvement (0: "
                                              "never).")
    early_stopping_min_delta: float = field(0.0, low=0,
                                            help="A change of the monitor smaller than this is no "
                                                 "improvement (early stopping).")
    steps_per_epoch: int = field(0, low=0,
                                 help="Cap on steps per epoch (0: the whole training split).")
    precision: str = field("float32", "Keras dtype policy.", choices=PRECISIONS)
    jit_compile: bool = field(False, "XLA for the gradient step (GPUs; ~8x slower on CPU).")
    strategy: str = field("auto", "tf.distribute strategy.", choices=distribution.STRATEGIES)
    num_cpu_devices: int = field(1, low=1,
                                 help="Split the CPU into this many logical devices (testing).")
    log_every: int = field(50, low=0, help="Log the running loss every N steps (0: never).")
    export: bool = field(True, "Write the SavedModel and model.keras at the end.")
    # Same batches and flip draws as running the backbone every epoch (feature_cache.py).
    feature_cache: bool = field(False, "Head mode: compute backbone features once (both "
                                "flips), train the head on them.")
    feature_store: str = field("", "With --feature_cache: a folder that keeps the backbone "
                               "features for later runs, audits and cleanings of the same images "
                               "through the same backbone weights ('': none; the experiment "
                               "uses <out_dir>/features).")
    # A random head's first gradients disturb a trainable backbone's features; Keras'
    # transfer-learning guide trains the head first, then everything (Kumar et al. 2022).
    init_from: str | None = field(None, "Start from a finished run's selected weights "
                                  "(backbone and head; its --model_dir), e.g. a head-only run "
                                  "before tuning every layer. Same backbone, size, weights "
                                  "source and head.")
    interval_coverage: float = field(0.9, low=0, high=1, low_open=True, high_open=True,
                                     help="Coverage of the age intervals served with each "
                                          "prediction (calibrated on the validation split).")
    interval_method: str = field("normalized", "normalized: a width per face, from a scale "
                                 "learned on the training split (ridge on the backbone's "
                                 "features); binned: one width per bin of predicted age.",
                                 choices=("normalized", "binned"))
    seed: int = field(0, "Seeds weights, data order and flips.")
    flags_text: str = field("", flag=False)  # the resolved flags, for flags.txt / TensorBoard

    def evaluation_pipeline(self, batch_size: int) -> pipeline.PipelineConfig:
        """How the run's faces are fed outside training (evaluation, calibration, export):
        the framing it trained with, nothing cached."""
        return pipeline.PipelineConfig(batch_size=batch_size, crop_faces=self.pipeline.crop_faces,
                                       face_margin=self.pipeline.face_margin,
                                       align=self.pipeline.align)

    def _check_manifest(self, manifest, path: str) -> None:
        """A split the run can use: not empty, and with a face box on every row when the
        faces are to be cut from them (--crop_faces)."""
        if manifest.empty:
            raise ValueError(f"--data_dir: {path} lists no image; prepare the data again with "
                             "more images (each split needs some)")
        if self.pipeline.crop_faces:
            boxes = manifest.reindex(columns=pipeline.BOX_COLUMNS).to_numpy(float)
            missing = int((~np.isfinite(boxes).all(axis=1)).sum())
            if missing:
                raise ValueError(f"--crop_faces: {missing} of the {len(manifest)} rows of {path} "
                                 "have no face box (this release gives none: UTKFace, AgeDB "
                                 "and APPA-REAL images are face crops); train without "
                                 "--crop_faces")

    def validate(self) -> None:
        """Raises ValueError naming the flag at fault."""
        config.check_values(self)  # every number finite and in its field's range
        self.model.validate()
        self.pipeline.validate()
        if not os.path.isdir(self.data_dir):
            raise ValueError(f"--data_dir={self.data_dir!r} is not a folder; run age-tf-prepare first")
        folder = prepared.PreparedDir(self.data_dir)
        for split in ("train", "val"):
            path = folder.manifest_path(split)
            if not os.path.exists(path):
                raise ValueError(f"--data_dir: {path} not found; is it an age-tf-prepare output folder?")
            self._check_manifest(prepared.read_manifest(path), path)
        if prepared.PreparedDir(self.data_dir).framing() == sources.FULL_PHOTOS and not self.pipeline.crop_faces:
            raise ValueError(f"--data_dir={self.data_dir!r} holds full photos with face boxes (e.g. "
                             "IMDB-Clean): pass --crop_faces to train on the faces")
        fileio.check_writable_dir(self.model_dir, "model_dir")
        if self.feature_cache and self.model.tune != "head":
            raise ValueError("--feature_cache needs --tune=head (a trainable backbone changes its features)")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"--warmup_epochs must be in [0, --epochs), got {self.warmup_epochs}")
        if self.init_from:
            init_weights(self)  # checks the run without loading anything


# What a run's weights only fit if equal: the variables (and, for EfficientNet's
# ImageNet-only Rescaling layer, the function) depend on these.
_INIT_MUST_MATCH = ("backbone", "image_size", "weights", "head_units", "dropout")


def init_weights(cfg: TrainConfig) -> str:
    """The weights file of cfg.init_from, after checking that it fits cfg's model.

    Raises:
      ValueError: naming --init_from and what is missing or differs.
    """
    run = cfg.init_from
    source = RunDir(run)
    if not (os.path.exists(source.best_weights) and os.path.exists(source.config)):
        raise ValueError(f"--init_from={run!r} is not a finished age-tf-train run (no "
                         "best.weights.h5 and config.json there); train it to the end first")
    if os.path.abspath(run) == os.path.abspath(cfg.model_dir or ""):
        raise ValueError(f"--init_from={run!r} is this run's own --model_dir")
    theirs = source.read_config().get("model", {})
    ours = json.loads(json.dumps(dataclasses.asdict(cfg.model), default=str))
    differ = [f"--{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in _INIT_MUST_MATCH
              if theirs.get(k) != ours[k]]
    if differ:
        raise ValueError(f"--init_from={run!r} was trained with another model ({'; '.join(differ)}); "
                         "its weights would not fit, or would compute something else")
    return source.best_weights
