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

from age_tf import callbacks as cb
from age_tf import distribution, export, labels, models, pipeline

MONITORS = {"val_loss": "min", "val_mae_years": "min", "val_plcc": "max", "val_srocc": "max"}
LR_SCHEDULES = ("cosine", "exponential", "constant")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs (the flags of `age-tf-train`)."""

    data_dir: str
    model_dir: str
    model: models.ModelConfig = dataclasses.field(default_factory=models.ModelConfig)
    pipeline: pipeline.PipelineConfig = dataclasses.field(default_factory=pipeline.PipelineConfig)
    epochs: int = 10
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    lr_decay_rate: float = 0.9  # per epoch, for 'exponential'
    min_lr_ratio: float = 0.01  # cosine ends at learning_rate * min_lr_ratio
    warmup_epochs: float = 0.0
    monitor: str = "val_srocc"
    early_stopping_patience: int = 0  # 0: off
    steps_per_epoch: int = 0  # 0: the whole training split
    precision: str = "float32"
    jit_compile: bool = False
    strategy: str = "auto"
    log_every: int = 50
    export: bool = True
    # Head mode only: run the frozen backbone once over the data (each training image as
    # stored and mirrored), then train the head on those features. Same batches, same flip
    # draws, same result as running the backbone every epoch, at a fraction of the cost.
    feature_cache: bool = False
    seed: int = 0
    flags_text: str = ""

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


# Model fields that must match for a run directory to be resumed.
_RESUME_KEYS = ("backbone", "image_size", "tune", "head_units")


def _check_resumable(model_dir: str, cfg: TrainConfig) -> None:
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        old = json.load(f)["model"]
    new = dataclasses.asdict(cfg.model)
    diff = {k: (old.get(k), new[k]) for k in _RESUME_KEYS
            if json.loads(json.dumps(old.get(k))) != json.loads(json.dumps(new[k]))}
    if diff:
        raise ValueError(
            f"--model_dir={model_dir} holds a run with a different model ({diff}, old vs new); "
            "use a new --model_dir, or the same model flags to resume it")


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal across workers when they agree exactly."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()[:16]


def train_and_evaluate(cfg: TrainConfig, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Trains (or resumes) a run in cfg.model_dir and exports it.

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
    replicas = strategy.num_replicas_in_sync
    batch = cfg.pipeline.batch_size
    if batch % replicas:
        raise ValueError(
            f"--batch_size={batch} is not divisible by the {replicas} replicas in sync; "
            f"use a multiple of {replicas}")
    train_df, images_dir = pipeline.load_manifest(cfg.data_dir, "train")
    val_df, _ = pipeline.load_manifest(cfg.data_dir, "val")
    steps_per_epoch = len(train_df) // batch
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size={batch} is larger than the training split ({len(train_df)} images)")
    if cfg.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.steps_per_epoch)

    chief = distribution.is_chief(strategy)
    # Non-chief workers write their (identical) checkpoints to a private scratch folder:
    # MultiWorkerMirroredStrategy needs every worker to save, one copy is kept.
    write_dir = cfg.model_dir if chief else os.path.join(
        cfg.model_dir, ".workers", distribution.worker_id(strategy))
    os.makedirs(write_dir, exist_ok=True)
    if chief:
        _check_resumable(cfg.model_dir, cfg)
        cb.atomic_write_text(os.path.join(cfg.model_dir, "config.json"),
                             json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        if cfg.flags_text:
            cb.atomic_write_text(os.path.join(cfg.model_dir, "flags.txt"), cfg.flags_text)

    keras.utils.set_random_seed(cfg.seed)  # same initial head weights on every worker
    keras.mixed_precision.set_global_policy(cfg.precision)
    logging.info(
        "strategy %s (%s): %d replica(s), global batch %d (%d per replica), %d steps/epoch, "
        "%d epochs, %d train / %d val images, seed %d, %s, XLA %s",
        cfg.strategy, type(strategy).__name__, replicas, batch, batch // replicas, steps_per_epoch,
        cfg.epochs, len(train_df), len(val_df), cfg.seed, cfg.precision, cfg.jit_compile)

    # Synchronized BatchNorm only means something with several replicas training BN.
    sync_bn = cfg.model.sync_batchnorm and replicas > 1 and cfg.model.tune == "full"
    if sync_bn and cfg.jit_compile:
        raise ValueError(
            "--jit_compile cannot be combined with --sync_batchnorm on several replicas (the "
            "all-reduce inside an XLA-compiled step is not allowed); pass --nosync_batchnorm")
    with strategy.scope():
        model = models.build_model(dataclasses.replace(cfg.model, sync_batchnorm=sync_bn))
        optimizer = keras.optimizers.Adam(make_schedule(cfg, steps_per_epoch))
        if cfg.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Create the slots now, so a checkpoint restores into them at once.
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "checkpoints"),
                                         max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed from %s at epoch %d", manager.latest_checkpoint, int(epoch_var.numpy()))
    initial_epoch = int(epoch_var.numpy())

    counter = pipeline.DecodeCounter()
    train_model, train_features, val_features = model, None, None
    if cfg.feature_cache:
        with strategy.scope():
            extractor = models.feature_extractor(model)
            train_model = models.head_model(model)  # shares the model's head layers
        start = time.monotonic()
        train_features = extract_features(extractor, train_df, images_dir, cfg.pipeline, True)
        val_features = extract_features(extractor, val_df, images_dir, cfg.pipeline, False)
        logging.info("feature cache: %s train and %s val features in %.1fs",
                     train_features.shape, val_features.shape, time.monotonic() - start)
    train_pipe = pipeline.InputPipeline(train_df, images_dir, cfg.pipeline, training=True,
                                        counter=counter, features=train_features)
    val_pipe = pipeline.InputPipeline(val_df, images_dir, cfg.pipeline, training=False,
                                      features=val_features)
    val_dist = strategy.experimental_distribute_dataset(val_pipe.dataset())
    train_step = _make_train_step(strategy, train_model, optimizer, batch, cfg.jit_compile)
    predict_val = _make_predict(strategy, train_model, val_dist)

    monitor_mode = MONITORS[cfg.monitor]
    correlation = cb.CorrelationCallback(predict_val)
    callbacks = [correlation]  # first: the others read its values
    if chief:
        callbacks += [
            cb.TensorBoardLogger(os.path.join(cfg.model_dir, "logs"), cfg.flags_text, initial_epoch),
            cb.BestWeights(os.path.join(cfg.model_dir, "best.weights.h5"), cfg.monitor, monitor_mode),
            cb.HistoryCSV(os.path.join(cfg.model_dir, "history.csv"), initial_epoch),
        ]
    if cfg.early_stopping_patience:
        # On every worker, so all stop together (their logs are identical).
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=cfg.monitor, mode=monitor_mode, patience=cfg.early_stopping_patience))
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)

    model.stop_training = False
    callback_list.on_train_begin()
    last_logs: dict = {}
    for epoch in range(initial_epoch, cfg.epochs):
        callback_list.on_epoch_begin(epoch)
        start = time.monotonic()
        iterator = iter(strategy.distribute_datasets_from_function(
            lambda ctx, e=epoch: train_pipe.dataset(ctx, epoch=e)))
        total = tf.constant(0.0)
        for step in range(steps_per_epoch):
            total += train_step(iterator)
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                logging.info("epoch %d step %d/%d: loss %.4f", epoch + 1, step + 1,
                             steps_per_epoch, float(total) / (step + 1))
        train_seconds = time.monotonic() - start
        loss = float(total) / steps_per_epoch
        logs = {"loss": loss, "mae_years": float(labels.to_years(loss)),
                # The rate of the last step (Keras evaluates the schedule at `iterations`).
                "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                "images_per_second": steps_per_epoch * batch / train_seconds}
        callback_list.on_epoch_end(epoch, logs)
        logs.update(correlation.last)  # CallbackList hands callbacks a copy of `logs`
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        last_logs = logs
        logging.info(
            "epoch %d/%d (%.0fs, %.0f img/s): loss %.4f, val_loss %.4f, val MAE %.2f years, "
            "val PLCC %.4f, val SROCC %.4f", epoch + 1, cfg.epochs, time.monotonic() - start,
            logs["images_per_second"], logs["loss"], logs["val_loss"], logs["val_mae_years"],
            logs["val_plcc"], logs["val_srocc"])
        if model.stop_training:
            logging.info("early stopping after epoch %d", epoch + 1)
            break
    callback_list.on_train_end()
    if counter.skipped:
        logging.warning("%d training file(s) failed to decode and were skipped", counter.skipped)

    fingerprint = weights_fingerprint(model)
    logging.info("final weights fingerprint (%s): %s", distribution.worker_id(strategy), fingerprint)
    result = {"epochs_completed": int(epoch_var.numpy()), "weights_fingerprint": fingerprint,
              "skipped_files": counter.skipped}
    if not chief:
        shutil.rmtree(write_dir, ignore_errors=True)
        return result
    result.update(_finish(cfg, last_logs))
    return result


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


def _finish(cfg: TrainConfig, last_logs: dict) -> dict:
    """Chief only: final metrics from the best epoch, the .keras file and the SavedModel."""
    best_path = os.path.join(cfg.model_dir, "best.weights.h5")
    history_path = os.path.join(cfg.model_dir, "history.csv")
    history = pd.read_csv(history_path)
    best_state = {}
    if os.path.exists(best_path + ".json"):
        with open(best_path + ".json") as f:
            best_state = json.load(f)
    best_epoch = best_state.get("epoch", int(history["epoch"].iloc[-1]))
    row = history[history["epoch"] == best_epoch].iloc[-1].to_dict()
    metrics = {
        "monitor": cfg.monitor,
        "best_epoch": int(best_epoch) + 1,
        "epochs_completed": int(history["epoch"].max()) + 1,
        "val": {k[4:]: float(v) for k, v in row.items() if k.startswith("val_")},
        "train_loss": float(row["loss"]),
    }
    # A clean, strategy-free copy of the model for saving and export.
    keras.mixed_precision.set_global_policy("float32")
    clean_cfg = dataclasses.replace(cfg.model, weights="none")
    model = models.build_model(clean_cfg)
    if os.path.exists(best_path):
        model.load_weights(best_path)
    keras_path = os.path.join(cfg.model_dir, "model.keras")
    tmp = os.path.join(cfg.model_dir, "model.tmp.keras")
    model.save(tmp)
    os.replace(tmp, keras_path)
    if cfg.export:
        export.export_saved_model(model, cfg.model.image_size, os.path.join(cfg.model_dir, "export"))
    cb.atomic_write_text(os.path.join(cfg.model_dir, "metrics.json"), json.dumps(metrics, indent=2))
    logging.info("best epoch %d: %s", metrics["best_epoch"], metrics["val"])
    return metrics
