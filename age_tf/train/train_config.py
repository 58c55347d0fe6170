"""The train package's configurations and their checks: one training run (the flags of
age-tf-train: TrainConfig, ModelConfig) and an export (age-tf-export). Light on purpose: no
TensorFlow here, so every command's --help and flag errors come in a second."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from age_tf import config, export_format, fileio
from age_tf.config import field
from age_tf.data import pipeline_config, prepared, sources
from age_tf.train.run_dir import RunDir

# The registries' names (models.BACKBONES, heads.HEADS hold what each is; they check at import
# that their keys are these): the flags and their checks need the names, not TensorFlow.
BACKBONE_NAMES = ("efficientnet_b3", "mobilenet_v2")
HEAD_NAMES = ("classification", "dldl", "mean_variance", "ordinal", "regression")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
LR_SCHEDULES = ("cosine", "exponential", "constant")
MONITORS = {"val_loss": "min", "val_mae_years": "min", "val_plcc": "max", "val_srocc": "max"}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The losses' constants (ModelConfig's head_* flags)."""

    sigma: float = 2.0  # dldl: label distribution's standard deviation, years
    l1: float = 1.0  # dldl: weight of |expected age - age| (years)
    mean: float = 0.2  # mean_variance: lambda1
    variance: float = 0.05  # mean_variance: lambda2


TUNE_MODES = ("head", "full")


@dataclasses.dataclass
class ModelConfig:
    """Architecture and fine-tuning mode (the model flags of `age-tf-train`)."""

    backbone: str = field("mobilenet_v2", "Registered backbone.", choices=BACKBONE_NAMES)
    image_size: int = pipeline_config.image_size_field()
    weights: str = field("imagenet", "'imagenet' (Keras' loader and cache), 'standin' (the "
                         "shipped backbone pretrained on synthetic faces, for offline demos), "
                         "'none' (random), or a path to a weights file of the backbone.")
    tune: str = field("head", "head: backbone frozen, only the new head trains; full: "
                      "everything trains.", choices=TUNE_MODES)
    head: str = field("regression", "What the network predicts and its loss: regression (the "
                      "study's MAE), classification (DEX), dldl (DLDL-v2), mean_variance, "
                      "ordinal (CORAL); age_tf/train/heads.py.", choices=HEAD_NAMES)
    head_units: tuple[int, ...] = field((512, 128), low=1, help="Hidden units of the GELU head.")
    head_sigma: float = field(2.0, low=0, low_open=True, help="dldl: the label distribution's "
                              "standard deviation (years).")
    head_l1_weight: float = field(1.0, low=0, help="dldl: weight of |expected age - age| "
                                  "(years).")
    head_mean_weight: float = field(0.2, low=0, help="mean_variance: weight of the mean loss.")
    head_variance_weight: float = field(0.05, low=0, help="mean_variance: weight of the "
                                        "variance loss.")
    dropout: float = field(0.0, low=0, high=1, high_open=True,
                           help="Dropout after each hidden head layer.")
    # None keeps Keras' (0.999 for MobileNetV2, 0.99 for EfficientNet), right for ImageNet
    # weights. Training from scratch on a short run needs ~0.9, or the moving statistics
    # are still near their initial values when validating.
    bn_momentum: float | None = field(None, low=0, high=1, low_open=True, high_open=True,
                                      help="Backbone BatchNorm momentum (default: Keras'; ~0.9 when"
                                           " training from scratch).")
    # All-reduce of batch statistics across replicas while BatchNorm trains ('full' mode):
    # every replica then applies the same moving-average update, so multi-worker copies stay
    # identical and results match one device with the global batch. Costs one small
    # all-reduce per BatchNorm layer per step; no effect on one device.
    sync_batchnorm: bool = field(True, "All-reduce BatchNorm batch statistics across "
                                 "replicas in 'full' mode (no effect on one device).")

    # Frozen, BatchNorm computes the same function in training and serving (batch and moving
    # statistics can disagree: docs/measurement_history.md). Off by default: the study trained it.
    freeze_batchnorm: bool = field(False, "In 'full' mode, keep the backbone's BatchNorm "
                                   "layers as pretrained (moving statistics, scale and offset "
                                   "fixed, inference mode while training).")

    def validate(self) -> None:
        config.check_values(self)
        if self.backbone not in BACKBONE_NAMES:
            raise ValueError(
                f"--backbone={self.backbone!r} is not registered; choose one of {list(BACKBONE_NAMES)}")
        if self.head not in HEAD_NAMES:
            raise ValueError(f"--head={self.head!r} is not registered; choose one of "
                             f"{list(HEAD_NAMES)}")
        if self.tune not in TUNE_MODES:
            raise ValueError(f"--tune must be one of {TUNE_MODES}, got {self.tune!r}")
        if self.weights not in WEIGHT_CHOICES and not os.path.isfile(self.weights):
            raise ValueError(f"--weights={self.weights!r}: not one of {WEIGHT_CHOICES} or an "
                             "existing weights file")

    def loss_weights(self) -> LossWeights:
        return LossWeights(self.head_sigma, self.head_l1_weight, self.head_mean_weight,
                                 self.head_variance_weight)


WEIGHT_CHOICES = ("imagenet", "standin", "none")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs (the flags of `age-tf-train`)."""

    data_dir: str = field(None, "Output folder of age-tf-prepare (train.csv, val.csv).")
    model_dir: str = field(None, "Run directory: checkpoints, logs, export (resumed if present).")
    model: ModelConfig = field(default_factory=ModelConfig)
    pipeline: pipeline_config.PipelineConfig = field(
        default_factory=pipeline_config.PipelineConfig)
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
    strategy: str = field("auto", "tf.distribute strategy.", choices=STRATEGIES)
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

    @classmethod
    def from_run(cls, run: RunDir) -> TrainConfig:
        """The run's TrainConfig, rebuilt from its config.json and checked field by field.

        Raises:
          FileNotFoundError: no config.json (not a run directory).
          ValueError: a field of config.json has the wrong type or range (names it).
        """
        try:
            data = run.read_config()
        except ValueError as e:  # json's errors
            raise ValueError(f"{run.config}: not readable JSON ({e})") from e
        return config.from_dict(cls, data, run.config)

    def evaluation_pipeline(self, batch_size: int) -> pipeline_config.PipelineConfig:
        """How the run's faces are fed outside training (evaluation, calibration, export):
        the framing it trained with, nothing cached."""
        return pipeline_config.PipelineConfig(batch_size=batch_size, crop_faces=self.pipeline.crop_faces,
                                       face_margin=self.pipeline.face_margin,
                                       align=self.pipeline.align)

    def _check_manifest(self, manifest, path: str) -> None:
        """A split the run can use: not empty, and with a face box on every row when the
        faces are to be cut from them (--crop_faces)."""
        if manifest.empty:
            raise ValueError(f"--data_dir: {path} lists no image; prepare the data again with "
                             "more images (each split needs some)")
        if self.pipeline.crop_faces:
            boxes = manifest.reindex(columns=pipeline_config.BOX_COLUMNS).to_numpy(float)
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


FORMATS = ("savedmodel", "tflite", "onnx")


FILE_FORMATS = {"tflite": ".tflite", "onnx": ".onnx"}  # written as one file, card beside it


QUANTIZATIONS = ("none", "float16", "int8")


@dataclasses.dataclass
class ExportConfig:
    """What `age-tf-export` writes from a finished run."""

    model_dir: str = field(None, "A finished age-tf-train run directory.")
    format: str = field("savedmodel", "savedmodel: (re)write <model_dir>/export with its card "
                        "(after evaluation, the card carries the test figures); tflite: one "
                        ".tflite file for devices, its card beside it as <out>.json; onnx: "
                        "one .onnx file for onnxruntime (pip install 'age_tf[onnx]'), its card "
                        "beside it.", choices=FORMATS)
    quantize: str = field("none", "TFLite weights: none (float32), float16, or int8 (weights "
                          "and activations, calibrated on training images).",
                          choices=QUANTIZATIONS)
    out: str | None = field(None, "The .tflite / .onnx file (default <model_dir>/model"
                            "[_<quantize>].tflite, <model_dir>/model.onnx).")
    calibration_images: int = field(200, low=1,
                                    help="Training images that calibrate int8 activations.")
    overwrite: bool = field(False, "Replace an existing .tflite file and its card.")
    data_dir: str | None = field(None, "int8: the run's prepared data, where it is now if it "
                                 "moved since training (default: the folder config.json names).")

    def file_path(self) -> str:
        """--out, or <model_dir>/model[_<quantize>].tflite / model.onnx."""
        suffix = "" if self.quantize == "none" else f"_{self.quantize}"
        return self.out or os.path.join(self.model_dir,
                                        f"model{suffix}{FILE_FORMATS[self.format]}")

    def validate(self) -> None:
        run = RunDir(self.model_dir)
        if not os.path.exists(run.model_keras):
            raise ValueError(f"--model_dir={self.model_dir!r}: no model.keras there; train the "
                             "run to the end first (age-tf-train)")
        if self.format == "savedmodel" and (self.out or self.quantize != "none"):
            raise ValueError("--out and --quantize are for --format=tflite; a SavedModel is "
                             "written to <model_dir>/export")
        if self.format == "onnx" and self.quantize != "none":
            raise ValueError("--quantize is for --format=tflite; the ONNX file is float32")
        if self.format in FILE_FORMATS:
            out = self.file_path()
            if not out.endswith(FILE_FORMATS[self.format]):
                raise ValueError(f"--out={self.out!r}: name the file "
                                 f"*{FILE_FORMATS[self.format]}")
            fileio.check_new_file(out, "out", self.overwrite, (export_format.card_path(out),))
