"""Training: one custom loop for every tf.distribute strategy, driving Keras callbacks.

Why a custom loop and not `model.fit`: Keras 3's `fit` fails under
MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica...)"), while a loop
around `strategy.run` works under every strategy. One loop, so single-device, multi-GPU and
multi-worker runs share every line of training code; Keras callbacks still plug in through
a CallbackList.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf import fileio, labels
from age_tf.config import field
from age_tf.data import pipeline
from age_tf.train import callbacks as cb
from age_tf.train import distribution, export, models

MONITORS = {"val_loss": "min", "val_mae_years": "min", "val_plcc": "max", "val_srocc": "max"}
LR_SCHEDULES = ("cosine", "exponential", "constant")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs (the flags of `age-tf-train`)."""

    data_dir: str = field(None, "Output folder of age-tf-prepare (train.csv, val.csv).")
    model_dir: str = field(None, "Run directory: checkpoints, logs, export (resumed if present).")
    model: models.ModelConfig = field(default_factory=models.ModelConfig)
    pipeline: pipeline.PipelineConfig = field(default_factory=pipeline.PipelineConfig)
    epochs: int = field(10, "Epochs to train in all (a resumed run continues).")
    learning_rate: float = field(1e-3, "Peak Adam learning rate.")
    lr_schedule: str = field("cosine", "Learning-rate decay.", choices=LR_SCHEDULES)
    lr_decay_rate: float = field(0.9, "Per-epoch factor for --lr_schedule=exponential.")
    min_lr_ratio: float = field(0.01, "Cosine decay ends at --learning_rate times this.")
    warmup_epochs: float = field(0.0, "Linear warmup length (epochs).")
    monitor: str = field("val_srocc", "Validation metric for the best model and early "
                         "stopping.", choices=sorted(MONITORS))
    early_stopping_patience: int = field(0, "Stop after this many epochs without improvement "
                                         "(0: never).")
    early_stopping_min_delta: float = field(0.0, "A change of the monitor smaller than this is "
                                            "no improvement (early stopping).")
    steps_per_epoch: int = field(0, "Cap on steps per epoch (0: the whole training split).")
    precision: str = field("float32", "Keras dtype policy.", choices=PRECISIONS)
    jit_compile: bool = field(False, "XLA for the gradient step (GPUs; ~8x slower on CPU).")
    strategy: str = field("auto", "tf.distribute strategy.", choices=distribution.STRATEGIES)
    num_cpu_devices: int = field(1, "Split the CPU into this many logical devices (testing).")
    log_every: int = field(50, "Log the running loss every N steps (0: never).")
    export: bool = field(True, "Write the SavedModel and model.keras at the end.")
    # Head mode only: run the frozen backbone once over the data (each training image as
    # stored and mirrored), then train the head on those features. Same batches, same flip
    # draws, same result as running the backbone every epoch, at a fraction of the cost.
    feature_cache: bool = field(False, "Head mode: compute backbone features once (both "
                                "flips), train the head on them.")
    # A random head's first gradients reach a trainable backbone at full size and disturb
    # the features it was chosen for; Keras' transfer-learning guide therefore trains the
    # head first, then unfreezes everything at a low rate (Kumar et al. 2022: "LP-FT").
    # What it bought on the demo: experiment.ExperimentConfig.full_from_head_epochs.
    init_from: str | None = field(None, "Start from a finished run's selected weights "
                                  "(backbone and head; its --model_dir), e.g. a head-only run "
                                  "before tuning every layer. Same backbone, size, weights "
                                  "source and head.")
    seed: int = field(0, "Seeds weights, data order and flips.")
    flags_text: str = field("", flag=False)  # the resolved flags, for flags.txt / TensorBoard

    def validate(self) -> None:
        """Raises ValueError naming the flag at fault."""
        self.model.validate()
        if not os.path.isdir(self.data_dir):
            raise ValueError(f"--data_dir={self.data_dir!r} is not a folder; run age-tf-prepare first")
        for split in ("train", "val"):
            path = os.path.join(self.data_dir, f"{split}.csv")
            if not os.path.exists(path):
                raise ValueError(f"--data_dir: {path} not found; is it an age-tf-prepare output folder?")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.monitor not in MONITORS:
            raise ValueError(f"--monitor must be one of {sorted(MONITORS)}, got {self.monitor!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.pipeline.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.pipeline.batch_size}")
        if self.feature_cache and self.model.tune != "head":
            raise ValueError("--feature_cache needs --tune=head (a trainable backbone changes its features)")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
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
    path = os.path.join(run, "best.weights.h5")
    config_path = os.path.join(run, "config.json")
    if not (os.path.exists(path) and os.path.exists(config_path)):
        raise ValueError(f"--init_from={run!r} is not a finished age-tf-train run (no "
                         "best.weights.h5 and config.json there); train it to the end first")
    if os.path.abspath(run) == os.path.abspath(cfg.model_dir or ""):
        raise ValueError(f"--init_from={run!r} is this run's own --model_dir")
    with open(config_path) as f:
        theirs = json.load(f).get("model", {})
    ours = json.loads(json.dumps(dataclasses.asdict(cfg.model), default=str))
    differ = [f"--{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in _INIT_MUST_MATCH
              if theirs.get(k) != ours[k]]
    if differ:
        raise ValueError(f"--init_from={run!r} was trained with another model ({'; '.join(differ)}); "
                         "its weights would not fit, or would compute something else")
    return path


def make_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """Learning rate as a function of the optimizer's step counter.

    Because it depends on `optimizer.iterations` only, restoring the optimizer from a
    checkpoint restores the schedule's position too.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate if not warmup else cfg.learning_rate * 0.01,
            decay_steps=max(total - warmup, 1), alpha=cfg.min_lr_ratio,
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
    if cfg.lr_schedule == "exponential":
        return WarmupExponential(cfg.learning_rate, steps_per_epoch, cfg.lr_decay_rate, warmup)
    return cfg.learning_rate


class WarmupExponential(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then learning_rate * decay_rate ** (epochs after warmup)."""

    def __init__(self, learning_rate, steps_per_epoch, decay_rate, warmup_steps):
        self.learning_rate, self.steps_per_epoch = learning_rate, steps_per_epoch
        self.decay_rate, self.warmup_steps = decay_rate, warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(self.warmup_steps)
        decayed = self.learning_rate * tf.pow(
            self.decay_rate, tf.maximum(step - warm, 0.0) / float(self.steps_per_epoch))
        if not self.warmup_steps:
            return decayed
        return tf.where(step < warm, self.learning_rate * (step + 1) / warm, decayed)

    def get_config(self):
        return dict(learning_rate=self.learning_rate, steps_per_epoch=self.steps_per_epoch,
                    decay_rate=self.decay_rate, warmup_steps=self.warmup_steps)


# Settings that may differ when a run is resumed: they change how it runs, not what it
# computes (same order, same flips, same steps). Everything else must match.
_RESUME_FREE = {"model_dir", "flags_text", "log_every", "export", "strategy", "jit_compile",
                "feature_cache", "pipeline.cache", "num_cpu_devices"}
_STOP_REASONS = {0: "running", 1: "all epochs done", 2: "early stopping"}


def data_fingerprint(data_dir: str) -> str:
    """A hash of the training and validation manifests (what a resumed run must train on)."""
    h = hashlib.sha256()
    for split in ("train", "val"):
        with open(os.path.join(data_dir, f"{split}.csv"), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = json.loads(json.dumps(v, default=str))
    return out


def check_resumable(model_dir: str, cfg: TrainConfig, fingerprint: str) -> None:
    """Refuses to resume a run under a configuration that would change what it computes.

    Raises:
      ValueError: naming each changed flag with its old and new value.
    """
    path = os.path.join(model_dir, "config.json")
    if not (os.path.exists(path) and _latest_checkpoint(model_dir)):
        return  # nothing trained yet: the new configuration simply applies
    with open(path) as f:
        old = json.load(f)
    old_fp = old.pop("data_fingerprint", None)
    before, now = _flatten(old), _flatten(dataclasses.asdict(cfg))
    changed = [f"--{k.rsplit('.', 1)[-1]}: {before.get(k)!r} -> {now[k]!r}"
               for k in sorted(now) if k not in _RESUME_FREE and before.get(k) != now[k]]
    if old_fp is not None and old_fp != fingerprint:
        changed.append(f"--data_dir: the train/val manifests in {cfg.data_dir} changed")
    if changed:
        raise ValueError(
            f"--model_dir={model_dir} holds a run trained with other settings ({'; '.join(changed)}); "
            "resuming would silently change it. Use the same flags, or a new --model_dir")


def _latest_checkpoint(model_dir: str) -> str | None:
    return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))


def run_status(model_dir: str) -> dict:
    """The run's state from its latest checkpoint, without building the model.

    Returns:
      {"epoch": completed epochs, "finished": bool, "reason": str, "best_epoch": 0-based or
      -1}; epoch 0 and not finished when there is no checkpoint.
    """
    path = _latest_checkpoint(model_dir)
    if not path:
        return {"epoch": 0, "finished": False, "reason": _STOP_REASONS[0], "best_epoch": -1}
    reader = tf.train.load_checkpoint(path)
    value = lambda name: int(reader.get_tensor(f"state/{name}/.ATTRIBUTES/VARIABLE_VALUE"))
    code = value("finished")
    return {"epoch": value("epoch"), "finished": code > 0, "reason": _STOP_REASONS[code],
            "best_epoch": value("best_epoch")}


class RunState(tf.Module):
    """Everything a resumed run must know besides the weights, saved in the checkpoint:
    epochs done, the best monitored value and its epoch, early stopping's reference value
    and wait counter, and whether (and why) the run finished."""

    def __init__(self):
        super().__init__(name="state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_value = tf.Variable(np.nan, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.stop_reference = tf.Variable(np.nan, dtype=tf.float64, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.finished = tf.Variable(0, dtype=tf.int64, trainable=False)


@dataclasses.dataclass
class Inputs:
    """The datasets of a run and its steps per epoch."""

    train: pipeline.InputPipeline
    val: pipeline.InputPipeline
    steps_per_epoch: int


def train_and_evaluate(cfg: TrainConfig, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Trains (or resumes, or just finishes) a run in cfg.model_dir and exports it.

    Args:
      cfg: the run's configuration.
      strategy: an existing strategy; by default made from cfg.strategy. It must exist
        before any dataset or model (MultiWorkerMirroredStrategy must be made at startup).

    Returns:
      The final metrics (also written to metrics.json by the chief).

    Raises:
      ValueError: bad configuration (named flag), checked before any work.
    """
    cfg.validate()
    strategy = strategy or distribution.get_strategy(cfg.strategy)
    _check_batch(cfg, strategy)
    chief = distribution.is_chief(strategy)
    fingerprint = data_fingerprint(cfg.data_dir)
    check_resumable(cfg.model_dir, cfg, fingerprint)
    status = run_status(cfg.model_dir)
    metrics_path = os.path.join(cfg.model_dir, "metrics.json")
    if status["finished"] and os.path.exists(metrics_path):
        logging.info("%s already finished (%s); nothing to train", cfg.model_dir, status["reason"])
        with open(metrics_path) as f:
            return json.load(f)
    if chief:
        _write_config(cfg, fingerprint)
    keras.utils.set_random_seed(cfg.seed)  # same initial head weights on every worker
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(cfg.precision)
    try:
        train_df, images_dir = pipeline.load_manifest(cfg.data_dir, "train")
        val_df, _ = pipeline.load_manifest(cfg.data_dir, "val")
        inputs = build_image_inputs(cfg, train_df, val_df, images_dir)
        model, optimizer, state, manager = create_or_restore_state(cfg, strategy, inputs.steps_per_epoch)
        if cfg.feature_cache:
            inputs, train_model = build_feature_inputs(cfg, strategy, model, train_df, val_df,
                                                      images_dir, inputs)
        else:
            train_model = model
        _log_setup(cfg, strategy, inputs, len(train_df), len(val_df))
        if not state.finished.numpy():
            train_loop(cfg, strategy, model, train_model, optimizer, state, manager, inputs, chief)
        fp = weights_fingerprint(model)
        logging.info("final weights fingerprint (%s): %s", distribution.worker_id(strategy), fp)
        result = {"epochs_completed": int(state.epoch.numpy()), "weights_fingerprint": fp,
                  "unusable_train_images": len(train_df) - len(inputs.train)}
        if not chief:
            shutil.rmtree(_write_dir(cfg, strategy), ignore_errors=True)
            return result
        result.update(finish(cfg, model, state))
        return result
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def summary(result: dict, model_dir: str) -> str:
    """One human-readable line about a finished run (what age-tf-train prints)."""
    if "val" not in result:
        return f"worker done: {result.get('epochs_completed')} epochs"
    v = result["val"]
    return (f"selected epoch {result['best_epoch']}/{result['epochs_completed']} "
            f"({result.get('selected', '')}): val MAE {v['mae_years']:.2f} years, "
            f"PLCC {v['plcc']:.4f}, SROCC {v['srocc']:.4f}\nrun directory: {model_dir}")


def _check_batch(cfg: TrainConfig, strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if cfg.pipeline.batch_size % replicas:
        raise ValueError(
            f"--batch_size={cfg.pipeline.batch_size} is not divisible by the {replicas} replicas "
            f"in sync; use a multiple of {replicas}")
    if models.synchronizes_batchnorm(cfg.model, replicas) and cfg.jit_compile:
        raise ValueError(
            "--jit_compile cannot be combined with --sync_batchnorm on several replicas (the "
            "all-reduce inside an XLA-compiled step is not allowed); pass --nosync_batchnorm")


def _write_config(cfg: TrainConfig, fingerprint: str) -> None:
    os.makedirs(cfg.model_dir, exist_ok=True)
    config = {**dataclasses.asdict(cfg), "data_fingerprint": fingerprint}
    fileio.atomic_write_text(os.path.join(cfg.model_dir, "config.json"),
                         json.dumps(config, indent=2, default=str))
    if cfg.flags_text:
        fileio.atomic_write_text(os.path.join(cfg.model_dir, "flags.txt"), cfg.flags_text)


def _write_dir(cfg: TrainConfig, strategy) -> str:
    """The chief writes into the run directory; other workers (MultiWorkerMirroredStrategy
    needs every worker to save) into a private scratch folder, removed at the end."""
    if distribution.is_chief(strategy):
        return cfg.model_dir
    return os.path.join(cfg.model_dir, ".workers", distribution.worker_id(strategy))


def build_image_inputs(cfg: TrainConfig, train_df, val_df, images_dir: str) -> Inputs:
    """Training and validation image pipelines; steps counted from the images they can serve.

    Files that vanished are left out here; one that fails to decode mid-epoch is skipped by
    the dataset (TF logs it), and a cache knows exactly which decode.
    """
    if cfg.feature_cache:
        # Features need every image (extract_features raises otherwise); the image
        # pipelines are replaced once the model exists.
        train = val = None
        served = len(train_df)
    else:
        train = pipeline.InputPipeline(train_df, images_dir, cfg.pipeline, training=True)
        val = pipeline.InputPipeline(val_df, images_dir, cfg.pipeline, training=False)
        served = len(train)
    steps = served // cfg.pipeline.batch_size
    if steps == 0:
        raise ValueError(f"--batch_size={cfg.pipeline.batch_size} is larger than the "
                         f"{served} usable training images")
    if cfg.steps_per_epoch:
        steps = min(steps, cfg.steps_per_epoch)
    return Inputs(train, val, steps)


def create_or_restore_state(cfg: TrainConfig, strategy, steps_per_epoch: int):
    """Model, optimizer and run state under the strategy, restored from the last checkpoint.

    Returns:
      (model, optimizer, state, checkpoint manager).
    """
    with strategy.scope():  # build_model synchronizes BatchNorm if the strategy has replicas
        model = models.build_model(cfg.model)
        optimizer = keras.optimizers.Adam(make_schedule(cfg, steps_per_epoch))
        if cfg.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Create the slots now, so a checkpoint restores into them at once.
        optimizer.build(model.trainable_variables)
        state = RunState()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, state=state)
    write_dir = _write_dir(cfg, strategy)
    os.makedirs(write_dir, exist_ok=True)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "checkpoints"),
                                         max_to_keep=2)
    if manager.latest_checkpoint:  # a resumed run continues from its own weights
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed from %s at epoch %d", manager.latest_checkpoint, int(state.epoch.numpy()))
    elif cfg.init_from:
        model.load_weights(init_weights(cfg))
        logging.info("started from %s (weights %s)", cfg.init_from, weights_fingerprint(model))
    return model, optimizer, state, manager


def build_feature_inputs(cfg: TrainConfig, strategy, model, train_df, val_df, images_dir,
                         inputs: Inputs):
    """Head mode: the frozen backbone's features of every image, and pipelines over them.

    Returns:
      (inputs over features, the head model that trains on them).
    """
    with strategy.scope():
        extractor = models.feature_extractor(model)
        head = models.head_model(model)  # shares the model's head layers
    start = time.monotonic()
    train_features = extract_features(extractor, train_df, images_dir, cfg.pipeline, True)
    val_features = extract_features(extractor, val_df, images_dir, cfg.pipeline, False)
    logging.info("feature cache: %s train and %s val features in %.1fs",
                 train_features.shape, val_features.shape, time.monotonic() - start)
    train = pipeline.InputPipeline(train_df, images_dir, cfg.pipeline, training=True,
                                   features=train_features)
    val = pipeline.InputPipeline(val_df, images_dir, cfg.pipeline, training=False,
                                 features=val_features)
    return dataclasses.replace(inputs, train=train, val=val), head


def _log_setup(cfg, strategy, inputs: Inputs, n_train: int, n_val: int) -> None:
    replicas, batch = strategy.num_replicas_in_sync, cfg.pipeline.batch_size
    logging.info(
        "strategy %s (%s): %d replica(s), global batch %d (%d per replica), %d steps/epoch, "
        "%d epochs, %d train (%d usable) / %d val images, seed %d, %s, XLA %s",
        cfg.strategy, type(strategy).__name__, replicas, batch, batch // replicas,
        inputs.steps_per_epoch, cfg.epochs, n_train, len(inputs.train), n_val, cfg.seed,
        cfg.precision, cfg.jit_compile)


def make_callbacks(cfg: TrainConfig, strategy, model, state: RunState, predict_val, chief: bool):
    """The epoch-end callbacks, in order: validation metrics first (the others read them),
    then the run-state tracker (best value, early stopping), then the chief's files."""
    correlation = cb.CorrelationCallback(predict_val)
    tracker = cb.RunTracker(state, cfg.monitor, MONITORS[cfg.monitor],
                            cfg.early_stopping_patience, cfg.early_stopping_min_delta)
    callbacks = [correlation, tracker]  # on every worker, so all stop together
    initial_epoch = int(state.epoch.numpy())
    if chief:
        callbacks += [
            cb.TensorBoardLogger(os.path.join(cfg.model_dir, "logs"), cfg.flags_text, initial_epoch),
            cb.BestWeights(os.path.join(cfg.model_dir, "best"), state),
            cb.HistoryCSV(os.path.join(cfg.model_dir, "history.csv"), initial_epoch),
        ]
    return keras.callbacks.CallbackList(callbacks, model=model), correlation


def train_loop(cfg, strategy, model, train_model, optimizer, state: RunState, manager,
               inputs: Inputs, chief: bool) -> None:
    """Epochs from the checkpointed one until the last or early stopping; checkpoints each."""
    val_dist = strategy.experimental_distribute_dataset(inputs.val.dataset())
    train_step = _make_train_step(strategy, train_model, optimizer, cfg.pipeline.batch_size,
                                  cfg.jit_compile)
    callback_list, correlation = make_callbacks(
        cfg, strategy, model, state, _make_predict(strategy, train_model, val_dist), chief)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(int(state.epoch.numpy()), cfg.epochs):
        callback_list.on_epoch_begin(epoch)
        logs = run_epoch(cfg, strategy, train_step, optimizer, inputs, epoch)
        callback_list.on_epoch_end(epoch, logs)
        logs.update(correlation.last)  # CallbackList hands callbacks a copy of `logs`
        state.epoch.assign(epoch + 1)
        if model.stop_training or epoch + 1 == cfg.epochs:
            state.finished.assign(2 if model.stop_training else 1)
        manager.save(checkpoint_number=epoch + 1)
        if chief:
            cb.BestWeights.prune(os.path.join(cfg.model_dir, "best"), int(state.best_epoch.numpy()))
        logging.info(
            "epoch %d/%d (%.0f img/s): loss %.4f, val_loss %.4f, val MAE %.2f years, "
            "val PLCC %.4f, val SROCC %.4f", epoch + 1, cfg.epochs, logs["images_per_second"],
            logs["loss"], logs["val_loss"], logs["val_mae_years"], logs["val_plcc"],
            logs["val_srocc"])
        if model.stop_training:
            logging.info("early stopping after epoch %d", epoch + 1)
            break
    callback_list.on_train_end()


def run_epoch(cfg: TrainConfig, strategy, train_step, optimizer, inputs: Inputs, epoch: int) -> dict:
    """One epoch of training steps; returns its logs (loss, learning rate, speed)."""
    start = time.monotonic()
    # Endless: a file that fails to decode mid-epoch cannot end the epoch early.
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: inputs.train.dataset(ctx, epoch=epoch, endless=True)))
    steps = inputs.steps_per_epoch
    total = tf.constant(0.0)
    for step in range(steps):
        total += train_step(iterator)
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            logging.info("epoch %d step %d/%d: loss %.4f", epoch + 1, step + 1, steps,
                         float(total) / (step + 1))
    loss = float(total) / steps
    return {"loss": loss, "mae_years": float(labels.to_years(loss)),
            # The rate of the last step (Keras evaluates the schedule at `iterations`).
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "images_per_second": steps * cfg.pipeline.batch_size / (time.monotonic() - start)}


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal across workers when they agree exactly."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()[:16]


def extract_features(extractor: keras.Model, manifest, images_dir: str,
                     pcfg: pipeline.PipelineConfig, both_flips: bool) -> np.ndarray:
    """Backbone features of every image: (N, 2, D) as stored and mirrored, or (N, 1, D).

    Runs locally on each worker (no collectives): every worker needs all features.

    Raises:
      ValueError: an image failed to decode (the cache must cover every manifest row).
    """

    def features(x):
        feats = [extractor(x, training=False)]
        if both_flips:
            feats.append(extractor(tf.reverse(x, axis=[2]), training=False))
        return tf.stack([tf.cast(f, tf.float32) for f in feats], axis=1)

    return pipeline.map_images(features, manifest, images_dir, pcfg)


def _make_train_step(strategy, model, optimizer, global_batch: int, jit_compile: bool):
    """A tf.function running one step on every replica; returns the global mean loss."""

    def gradients(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = tf.abs(tf.cast(pred, tf.float32) - y)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled, model.trainable_variables)

    if jit_compile:
        # XLA compiles the forward and backward pass only: the iterator and the
        # cross-replica gradient reduction inside apply_gradients stay outside, so it works
        # under any strategy.
        gradients = tf.function(gradients, jit_compile=True)

    def step_fn(x, y):
        loss, grads = gradients(x, y)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        x, y = next(iterator)
        losses = strategy.run(step_fn, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def _make_predict(strategy, model, dist_dataset):
    """Returns a function predicting a whole distributed dataset: (labels, predictions)."""

    @tf.function
    def step(x, y):
        pred, true = strategy.run(lambda a, b: (tf.cast(model(a, training=False), tf.float32), b),
                                  args=(x, y))
        return strategy.gather(true, axis=0), strategy.gather(pred, axis=0)

    def predict():
        trues, preds = [], []
        for x, y in dist_dataset:
            t, p = step(x, y)
            trues.append(t.numpy())
            preds.append(p.numpy())
        return np.concatenate(trues), np.concatenate(preds)

    return predict


def finish(cfg: TrainConfig, model: keras.Model, state: RunState) -> dict:
    """Chief only: the trained model itself, with its best epoch's weights, becomes
    model.keras and the SavedModel; metrics.json records which epoch was selected.

    The model is never rebuilt: a different construction given the same weights can compute
    a different function (Keras' EfficientNet adds a layer only with weights="imagenet").
    """
    history = pd.read_csv(os.path.join(cfg.model_dir, "history.csv"))
    best_epoch = int(state.best_epoch.numpy())
    last_epoch = int(history["epoch"].max())
    if best_epoch >= 0:
        model.load_weights(cb.BestWeights.path_for(os.path.join(cfg.model_dir, "best"), best_epoch))
        selected = f"best epoch by {cfg.monitor}"
    else:
        logging.warning("no epoch gave a valid %s (NaN every epoch?): exporting the LAST epoch's "
                        "weights, not a best model", cfg.monitor)
        best_epoch, selected = last_epoch, f"last epoch (no epoch gave a valid {cfg.monitor})"
    row = history[history["epoch"] == best_epoch].iloc[-1].to_dict()
    metrics = {
        "monitor": cfg.monitor,
        "best_epoch": best_epoch + 1,
        "selected": selected,
        "epochs_completed": int(state.epoch.numpy()),
        "stopped_by": _STOP_REASONS[int(state.finished.numpy())],
        "val": {k[4:]: float(v) for k, v in row.items() if k.startswith("val_")},
        "train_loss": float(row["loss"]),
    }
    with fileio.atomic_path(os.path.join(cfg.model_dir, "best.weights.h5")) as tmp:
        model.save_weights(tmp)
    with fileio.atomic_path(os.path.join(cfg.model_dir, "model.keras")) as tmp:
        model.save(tmp)
    if cfg.export:
        export.export_saved_model(model, cfg.model.image_size, os.path.join(cfg.model_dir, "export"))
    fileio.atomic_write_text(os.path.join(cfg.model_dir, "metrics.json"), json.dumps(metrics, indent=2))
    logging.info("selected epoch %d (%s): %s", metrics["best_epoch"], selected, metrics["val"])
    return metrics
