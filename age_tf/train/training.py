"""Training: one custom loop for every tf.distribute strategy, driving Keras callbacks.

Why a custom loop and not `model.fit`: Keras 3's `fit` fails under
MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica...)"), while a loop
around `strategy.run` works under every strategy. One loop, so single-device, multi-GPU and
multi-worker runs share every line of training code; Keras callbacks still plug in.

The steps, in call order: `train_and_evaluate` checks the configuration and the run folder,
`create_run` builds the inputs and calls `create_or_restore_state`, `train_loop` makes the
callbacks (`make_callbacks`) and runs `run_epoch` until the last epoch or early stopping,
and `finish` exports what trained.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import re
import shutil
import time
from collections.abc import Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf import decisions, fileio, labels, progress
from age_tf.data import pipeline, prepared
from age_tf.errors import DataError
from age_tf.train import callbacks as cb
from age_tf.train import card, distribution, export, feature_cache, heads, intervals, models
from age_tf.train.run_dir import (
    RunDir,
    StopReason,
    check_resumable,
    config_digest,
    is_done,
    run_status,
)
from age_tf.train.schedules import make_schedule
from age_tf.train.train_config import MONITORS, TrainConfig, init_weights


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
        self.finished = tf.Variable(int(StopReason.RUNNING), dtype=tf.int64, trainable=False)


@dataclasses.dataclass
class Inputs:
    """The datasets of a run and its steps per epoch."""

    train: pipeline.InputPipeline
    val: pipeline.InputPipeline
    steps_per_epoch: int


@dataclasses.dataclass
class Run:
    """One run being trained: what every step of the loop works on."""

    cfg: TrainConfig
    strategy: tf.distribute.Strategy
    chief: bool
    dir: RunDir  # where this process writes: the run folder, or a worker's scratch folder
    model: keras.Model  # what is saved and served
    train_model: keras.Model  # what the steps train: the model, or its head on features
    # (outputs what the head's loss sees: heads.HEADS)
    predict_model: keras.Model  # the same layers to the served age (validation)
    optimizer: keras.optimizers.Optimizer
    state: RunState
    manager: tf.train.CheckpointManager
    inputs: Inputs
    # The validation predictor the epochs used (traced once), when this process can run it
    # alone: not under several workers, whose predictor gathers across them.
    predict_val: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    # The frozen backbone's features of the train and val images (head runs on cached
    # features): the interval scale is fitted on them, not on a second backbone pass.
    features: dict[str, np.ndarray] | None = None
    # Seconds per step of this process's work (inputs, train, intervals, save, export):
    # metrics.json's "seconds", the experiment's time table.
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


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
    cfg = with_absolute_paths(cfg)
    strategy = strategy or distribution.get_strategy(cfg.strategy)
    _check_batch(cfg, strategy)
    run_dir = RunDir(cfg.model_dir)
    if not distribution.is_chief(strategy):
        return _train(cfg, strategy, run_dir)
    with run_dir.lock():  # one training process per run folder
        os.makedirs(run_dir.root, exist_ok=True)
        with progress.log_to(run_dir.log):
            for path in run_dir.remove_partial_writes():
                logging.info("removed %s (left by an interrupted write)", path)
            return _train(cfg, strategy, run_dir)


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """cfg with its folders absolute: config.json, and every reader of the run folder, must
    not depend on the folder the command ran from."""
    absolute = {k: os.path.abspath(getattr(cfg, k)) for k in
                ("data_dir", "model_dir", "init_from", "feature_store") if getattr(cfg, k)}
    return dataclasses.replace(cfg, **absolute)


def _train(cfg: TrainConfig, strategy, run_dir: RunDir) -> dict:
    fingerprint = prepared.PreparedDir(cfg.data_dir).fingerprint()
    check_resumable(run_dir, dataclasses.asdict(cfg), fingerprint)
    if is_done(run_dir):
        progress.say(f"{cfg.model_dir} already finished ({run_status(run_dir)['reason']}); "
                     "nothing to train")
        with open(run_dir.metrics) as f:
            return json.load(f)
    chief = distribution.is_chief(strategy)
    if chief:
        _write_config(cfg, run_dir)
    keras.utils.set_random_seed(cfg.seed)  # same initial head weights on every worker
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(cfg.precision)
    try:
        started = time.monotonic()
        run = create_run(cfg, strategy, chief, run_dir)
        run.seconds["inputs"] = time.monotonic() - started
        if not run.state.finished.numpy():
            started = time.monotonic()
            train_loop(run)
            run.seconds["train"] = time.monotonic() - started
        fp = feature_cache.weights_fingerprint(run.model)
        logging.info("final weights fingerprint (%s): %s", distribution.worker_id(strategy), fp)
        result = {"epochs_completed": int(run.state.epoch.numpy()), "weights_fingerprint": fp}
        if not chief:
            shutil.rmtree(run.dir.root, ignore_errors=True)
            return result
        result.update(finish(run, run_dir))
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


def _config_text(cfg: TrainConfig) -> str:
    """config.json of the run: its configuration and the data it trains on."""
    config = {**dataclasses.asdict(cfg), "data_fingerprint": prepared.PreparedDir(cfg.data_dir).fingerprint()}
    return json.dumps(config, indent=2, default=str)


def _write_config(cfg: TrainConfig, run_dir: RunDir) -> None:
    os.makedirs(run_dir.root, exist_ok=True)
    fileio.atomic_write_text(run_dir.config, _config_text(cfg))
    if cfg.flags_text:
        fileio.atomic_write_text(run_dir.flags, cfg.flags_text)


def create_run(cfg: TrainConfig, strategy, chief: bool, run_dir: RunDir) -> Run:
    """Inputs, model, optimizer and state of the run, restored from its last checkpoint."""
    train_df, images_dir = prepared.load_manifest(cfg.data_dir, "train")
    val_df, _ = prepared.load_manifest(cfg.data_dir, "val")
    check_disjoint(cfg.data_dir, train_df, val_df)
    check_head_ages(cfg, {"train": train_df, "val": val_df})
    write_dir = run_dir if chief else run_dir.worker(distribution.worker_id(strategy))
    if cfg.feature_cache:
        # Features need every image (extract_features raises otherwise).
        steps = steps_per_epoch(cfg, len(train_df))
        model, optimizer, state, manager = create_or_restore_state(cfg, strategy, steps, write_dir)
        train, val, predict_model, features = feature_cache.feature_pipelines(
            cfg, strategy, model, train_df, val_df, images_dir)
        with strategy.scope():
            train_model = models.head_model(model, raw=True)
    else:
        train = pipeline.InputPipeline(train_df, images_dir, cfg.pipeline, cfg.model.image_size,
                                       training=True, seed=cfg.seed)
        val = pipeline.InputPipeline(val_df, images_dir, cfg.pipeline, cfg.model.image_size,
                                     training=False)
        steps = steps_per_epoch(cfg, len(train))
        model, optimizer, state, manager = create_or_restore_state(cfg, strategy, steps, write_dir)
        train_model, predict_model = models.raw_model(model), model
        features = None
    inputs = Inputs(train, val, steps)
    _log_setup(cfg, strategy, inputs, len(train_df), len(val_df))
    return Run(cfg, strategy, chief, write_dir, model, train_model, predict_model, optimizer,
               state, manager, inputs, features=features)


def check_disjoint(data_dir: str, train_df: pd.DataFrame, val_df: pd.DataFrame) -> None:
    """Refuses a validation split that shares images with the training split: its scores,
    the best epoch and the intervals would all be measured on seen faces.

    Raises:
      DataError: naming both files, how many images they share, and one of them.
    """
    shared = set(train_df["path"]) & set(val_df["path"])
    if shared:
        raise DataError(
            f"{os.path.join(data_dir, 'val.csv')} shares {len(shared)} of its {len(val_df)} "
            f"images with train.csv (e.g. {min(shared)}): validation must be held out; "
            "split the data with age-tf-prepare")


def check_head_ages(cfg: TrainConfig, frames: dict[str, pd.DataFrame]) -> None:
    """Refuses labels a distribution or ordinal head has no class for (above MAX_CLASS_AGE):
    clipped, a 120 would train as a 100 and widen the intervals around ages the head can
    never give.

    Raises:
      DataError: naming the manifest, how many labels, the oldest, and the two fixes.
    """
    if cfg.model.head == "regression":
        return
    for split, df in frames.items():
        ages = df["age"].to_numpy(float)
        over = ages > labels.MAX_CLASS_AGE + 0.5  # class_of rounds to whole years
        if over.any():
            raise DataError(
                f"{os.path.join(cfg.data_dir, split + '.csv')}: {int(over.sum())} label(s) above "
                f"{labels.MAX_CLASS_AGE} (oldest {ages.max():g}), but --head={cfg.model.head} "
                f"has classes 0-{labels.MAX_CLASS_AGE} only; prepare with "
                f"--max_age={labels.MAX_CLASS_AGE}, or train --head=regression")


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite."""


def _check_finite(loss: float, epoch: int, step: int, cfg: TrainConfig) -> None:
    if not np.isfinite(loss):
        raise TrainingDiverged(
            f"epoch {epoch + 1}, step {step}: the training loss is {loss} (training diverged); "
            f"nothing of this epoch was saved, the checkpoint of epoch {epoch} is kept. Train "
            f"in a new --model_dir with a lower --learning_rate (this run: "
            f"{cfg.learning_rate:g}), and check the ages in {cfg.data_dir}/train.csv")


def _save_checkpoint(run: Run, epoch: int) -> None:
    """The epoch's checkpoint; a full disk is said in one line, and its partial files go."""
    try:
        run.manager.save(checkpoint_number=epoch + 1)
    except (tf.errors.ResourceExhaustedError, OSError) as e:
        run.dir.remove_partial_writes()
        if isinstance(e, OSError) and e.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"no space left writing the checkpoint of epoch {epoch + 1} "
                      f"to {run.dir.checkpoints}; the checkpoint of epoch {epoch} is intact: "
                      "free space and run the same command again to resume") from None


def steps_per_epoch(cfg: TrainConfig, served: int) -> int:
    """Full global batches in one pass over the `served` training images, capped by
    --steps_per_epoch.

    Raises:
      ValueError: not one full batch.
    """
    steps = pipeline.full_batches(served, cfg.pipeline.batch_size)
    if steps == 0:
        raise ValueError(f"--batch_size={cfg.pipeline.batch_size} is larger than the "
                         f"{served} usable training images")
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps


def create_or_restore_state(cfg: TrainConfig, strategy, steps: int, write_dir: RunDir):
    """Model, optimizer and run state under the strategy, restored from the last checkpoint.

    Returns:
      (model, optimizer, state, checkpoint manager).
    """
    with strategy.scope():  # build_model synchronizes BatchNorm if the strategy has replicas
        model = models.build_model(cfg.model)
        optimizer = keras.optimizers.Adam(make_schedule(cfg, steps))
        if cfg.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Create the slots now, so a checkpoint restores into them at once.
        optimizer.build(model.trainable_variables)
        state = RunState()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, state=state)
    os.makedirs(write_dir.root, exist_ok=True)
    restored = restore_newest_readable(checkpoint, write_dir)
    manager = tf.train.CheckpointManager(checkpoint, write_dir.checkpoints, max_to_keep=2)
    if restored:  # a resumed run continues from its own weights
        progress.say(f"resumed from {restored} at epoch {int(state.epoch.numpy())}")
    elif cfg.init_from:
        model.load_weights(init_weights(cfg))
        progress.say(f"started from {cfg.init_from} (weights "
                     f"{feature_cache.weights_fingerprint(model)})")
    return model, optimizer, state, manager


def restore_newest_readable(checkpoint: tf.train.Checkpoint, run: RunDir) -> str | None:
    """Restores the newest checkpoint that reads back whole; returns its path (None: none).

    A damaged one (bad bytes, cut short, or a garbled `checkpoint` index) is named in one
    log line and the one before it is used; the index is rewritten to what was restored, so
    the next save and its pruning start from there.

    Raises:
      ValueError: checkpoints exist but none can be read (naming the folder).
    """
    paths = run.checkpoint_paths()
    for i, path in enumerate(paths):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, IndexError, AssertionError) as e:
            reason = (str(getattr(e, "message", e)).strip().splitlines() or [""])[0]
            reason = re.sub(r"\{\{[^}]*\}\}\s*", "", reason)[:200]  # TF's op names say nothing
            logging.warning("checkpoint %s cannot be read (%s: %s); trying the one before it",
                            path, type(e).__name__, reason)
            continue
        if tf.train.latest_checkpoint(run.checkpoints) != path:
            tf.compat.v1.train.update_checkpoint_state(
                run.checkpoints, path, all_model_checkpoint_paths=paths[i:][::-1])
        return path
    if paths:
        raise ValueError(f"no checkpoint in {run.checkpoints} can be read (all {len(paths)} are "
                         "damaged); delete that folder to train the run again from the start")
    return None


def _log_setup(cfg, strategy, inputs: Inputs, n_train: int, n_val: int) -> None:
    replicas, batch = strategy.num_replicas_in_sync, cfg.pipeline.batch_size
    progress.say(
        f"strategy {cfg.strategy} ({type(strategy).__name__}): {replicas} replica(s), global "
        f"batch {batch} ({batch // replicas} per replica), {inputs.steps_per_epoch} steps/epoch, "
        f"{cfg.epochs} epochs, {n_train} train ({len(inputs.train)} usable) / {n_val} val "
        f"images, seed {cfg.seed}, {cfg.precision}, XLA {cfg.jit_compile}")


def make_callbacks(run: Run, predict_val) -> cb.EpochCallbacks:
    """The epoch-end callbacks: validation metrics, the run-state tracker (best value, early
    stopping; on every worker, so all stop together), and the chief's files."""
    cfg, state = run.cfg, run.state
    callbacks = [cb.CorrelationCallback(predict_val),
                 cb.RunTracker(state, cfg.monitor, MONITORS[cfg.monitor],
                               cfg.early_stopping_patience, cfg.early_stopping_min_delta)]
    initial_epoch = int(state.epoch.numpy())
    if run.chief:
        callbacks += [
            cb.TensorBoardLogger(run.dir.logs, cfg.flags_text, initial_epoch),
            cb.BestWeights(run.dir.best, state),
            cb.HistoryCSV(run.dir.history, initial_epoch),
        ]
    return cb.EpochCallbacks(callbacks, model=run.model)


def train_loop(run: Run) -> None:
    """Epochs from the checkpointed one until the last or early stopping; checkpoints each."""
    cfg, state, model = run.cfg, run.state, run.model
    val_dist = distribution.distribute_dataset(run.strategy, run.inputs.val.dataset())
    loss = functools.partial(heads.HEADS[cfg.model.head].loss, w=cfg.model.loss_weights())
    train_step = _make_train_step(run.strategy, run.train_model, run.optimizer, loss,
                                  cfg.pipeline.batch_size, cfg.jit_compile)
    predict_val = _make_predict(run.strategy, run.predict_model, val_dist)
    if not isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        run.predict_val = predict_val
    callback_list = make_callbacks(run, predict_val)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(int(state.epoch.numpy()), cfg.epochs):
        callback_list.on_epoch_begin(epoch)
        epoch_logs = run_epoch(run, train_step, epoch)
        _check_finite(epoch_logs["loss"], epoch, run.inputs.steps_per_epoch, cfg)
        logs = callback_list.on_epoch_end(epoch, epoch_logs)
        state.epoch.assign(epoch + 1)
        if model.stop_training:
            state.finished.assign(int(StopReason.EARLY_STOPPING))
        elif epoch + 1 == cfg.epochs:
            state.finished.assign(int(StopReason.ALL_EPOCHS))
        _save_checkpoint(run, epoch)
        if run.chief:
            cb.BestWeights.prune(run.dir.best, int(state.best_epoch.numpy()))
        progress.say(
            f"epoch {epoch + 1}/{cfg.epochs} ({logs['images_per_second']:.0f} img/s): loss "
            f"{logs['loss']:.4f}, val MAE {logs['val_mae_years']:.2f} years, val PLCC "
            f"{logs['val_plcc']:.4f}, val SROCC {logs['val_srocc']:.4f}")
        if model.stop_training:
            progress.say(f"early stopping after epoch {epoch + 1}")
            break
    callback_list.on_train_end()


def run_epoch(run: Run, train_step, epoch: int) -> dict:
    """One epoch of training steps; returns its logs (loss, learning rate, speed)."""
    cfg, inputs = run.cfg, run.inputs
    start = time.monotonic()
    # Endless: a file that fails to decode mid-epoch cannot end the epoch early.
    iterator = iter(distribution.distribute_datasets(
        run.strategy, lambda ctx: inputs.train.dataset(ctx, epoch=epoch, endless=True)))
    steps = inputs.steps_per_epoch
    total = tf.constant(0.0)
    with progress.Bar(steps, f"epoch {epoch + 1}/{cfg.epochs}", unit="steps") as bar:
        for step in range(steps):
            total += train_step(iterator)
            bar.update()
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                _check_finite(float(total), epoch, step + 1, cfg)  # stop early, not at the end
                logging.info("epoch %d step %d/%d: loss %.4f", epoch + 1, step + 1, steps,
                             float(total) / (step + 1))
    loss = float(total) / steps
    # Only regression's loss is an MAE; the other heads' losses have no unit of years.
    mae = float(labels.to_years(loss)) if cfg.model.head == "regression" else float("nan")
    return {"loss": loss, "mae_years": mae,
            # The rate of the last step (Keras evaluates the schedule at `iterations`).
            "learning_rate": float(keras.ops.convert_to_numpy(run.optimizer.learning_rate)),
            "images_per_second": steps * cfg.pipeline.batch_size / (time.monotonic() - start)}


def _make_train_step(strategy, model, optimizer, loss_fn, global_batch: int, jit_compile: bool):
    """A tf.function running one step on every replica; returns the global mean loss.

    Args:
      loss_fn: (labels, model outputs) -> per-face loss (the head's).
    """

    def gradients(x, y):
        with tf.GradientTape() as tape:
            per_example = loss_fn(y, model(x, training=True))
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

    def gathered(x, y):
        pred, true = strategy.run(lambda a, b: (tf.cast(model(a, training=False), tf.float32), b),
                                  args=(x, y))
        return strategy.gather(true, axis=0), strategy.gather(pred, axis=0)

    # reduce_retracing: the last, smaller batch traces once more with an open batch size.
    # TensorFlow counts traces per Python code object; a fresh callable per run keeps every
    # run's two traces its own (a shared nested function would sum them across runs and warn
    # of "retracing" in a loop that is not happening).
    step = tf.function(functools.partial(gathered), reduce_retracing=True)

    def predict():
        trues, preds = [], []
        for x, y in dist_dataset:
            t, p = step(x, y)
            trues.append(t.numpy())
            preds.append(p.numpy())
        return np.concatenate(trues), np.concatenate(preds)

    return predict


def validation_years(cfg: TrainConfig, model: keras.Model, predict_val=None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) in years of the validation split: what the served intervals and
    decisions are calibrated on (the test split is never read here).

    Args:
      predict_val: the run's validation predictor ((labels, predictions) in label units),
        already traced and, for a head trained on cached features, free of backbone passes;
        without it the model predicts the validation images.
    """
    if predict_val is not None:
        scaled_true, pred = predict_val()
        true = labels.to_years(scaled_true.astype(np.float64))
    else:
        val_df, images_dir = prepared.load_manifest(cfg.data_dir, "val")
        pred = pipeline.map_images(lambda x: model(x, training=False), val_df, images_dir,
                                   cfg.pipeline, cfg.model.image_size, "calibrating")
        true = val_df["age"].to_numpy(float)
    return np.asarray(true, np.float64).reshape(-1), labels.to_years(
        np.asarray(pred, np.float64).reshape(-1))


def calibrate_intervals(cfg: TrainConfig, model: keras.Model, true: np.ndarray,
                        pred: np.ndarray, features: dict[str, np.ndarray] | None = None
                        ) -> dict:
    """The served intervals, from the selected model's validation residuals (and, for
    --interval_method=normalized, a scale learned on the training split's residuals).

    Args:
      features: the frozen backbone's features of every train and val image, in manifest
        order (a head run on cached features): the scale's inputs without a backbone pass.
    """
    # Served ages and intervals stay within the ages the model was trained on.
    train_ages = prepared.load_manifest(cfg.data_dir, "train")[0]["age"]
    age_range = [float(train_ages.min()), float(train_ages.max())]
    if cfg.interval_method == intervals.NORMALIZED:
        (t_train, p_train, f_train), (t_val, p_val, f_val) = (
            features_and_years(cfg, model, split, (features or {}).get(split))
            for split in ("train", "val"))
        fit = intervals.fit_scale(f_train, t_train, np.clip(p_train, *age_range))
        calibration = intervals.calibrate_normalized(t_val, np.clip(p_val, *age_range), f_val,
                                                     fit, cfg.interval_coverage)
        logging.info("intervals at %.0f%%: prediction +- %.2f x a learned scale",
                     100 * cfg.interval_coverage, calibration["quantile"])
    else:
        calibration = intervals.calibrate(true, pred, cfg.interval_coverage)
        logging.info("intervals at %.0f%%: half-widths %s years over predicted-age bins %s",
                     100 * cfg.interval_coverage,
                     [round(w, 1) for w in calibration["half_widths"]], calibration["edges"])
    calibration["age_range"] = age_range
    return calibration


def features_and_years(cfg: TrainConfig, model: keras.Model, split: str,
                       features: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, served predictions, pooled backbone features) of a split's images, in one
    backbone pass (the features the served graph computes its interval scale from), or from
    `features`, the frozen backbone's features of every image already computed."""
    df, images_dir = prepared.load_manifest(cfg.data_dir, split)
    extract, head = models.feature_extractor(model), models.head_model(model)
    if features is not None:
        pred = np.concatenate([np.asarray(head(features[i:i + 256], training=False),
                                          np.float64).reshape(-1)
                               for i in range(0, len(features), 256)])
        return (df["age"].to_numpy(float), labels.to_years(pred),
                np.asarray(features, np.float64))

    def both(x):
        f = extract(x, training=False)
        return tf.concat([tf.reshape(tf.cast(head(f), tf.float32), [-1, 1]),
                          tf.cast(f, tf.float32)], axis=1)

    # A file that no longer decodes is left out (training skipped it too).
    rows, out = pipeline.map_decodable(both, df, images_dir, cfg.evaluation_pipeline(64),
                                       cfg.model.image_size, f"interval scale ({split})")
    return (df["age"].to_numpy(float)[rows], labels.to_years(out[:, 0].astype(np.float64)),
            out[:, 1:].astype(np.float64))


def finish(run: Run, run_dir: RunDir) -> dict:
    """Chief only: the trained model itself, with its best epoch's weights, becomes
    model.keras and the SavedModel; metrics.json records which epoch was selected.

    The model is never rebuilt: a different construction given the same weights can compute
    a different function (Keras' EfficientNet adds a layer only with weights="imagenet").
    """
    cfg, model, state = run.cfg, run.model, run.state
    history = pd.read_csv(run_dir.history)
    best_epoch = int(state.best_epoch.numpy())
    last_epoch = int(history["epoch"].max())
    if best_epoch >= 0:
        model.load_weights(cb.BestWeights.path_for(run_dir.best, best_epoch))
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
        "stopped_by": StopReason(int(state.finished.numpy())).text,
        "val": {k[4:]: float(v) for k, v in row.items() if k.startswith("val_")},
        "train_loss": float(row["loss"]),
        "config_digest": config_digest(_config_text(cfg)),  # the config.json that trained
    }
    started = time.monotonic()
    true, pred = validation_years(cfg, model, run.predict_val)
    calibration = calibrate_intervals(cfg, model, true, pred, run.features)
    run.seconds["intervals"] = time.monotonic() - started
    fileio.atomic_write_text(run_dir.intervals, json.dumps(calibration, indent=2))
    # Served predictions are clipped to the training ages; the decisions' calibration too.
    low, high = calibration["age_range"]
    fileio.atomic_write_text(run_dir.decisions, json.dumps(
        decisions.calibration_sample(true, np.clip(pred, low, high), seed=cfg.seed)))
    started = time.monotonic()
    with fileio.atomic_path(run_dir.best_weights) as tmp:
        model.save_weights(tmp)
    with fileio.atomic_path(run_dir.model_keras) as tmp:
        model.save(tmp)
    run.seconds["save"] = time.monotonic() - started
    if cfg.export:
        started = time.monotonic()
        export.export_saved_model(model, cfg.model.image_size, run_dir.export, calibration,
                                  card.build(run_dir, calibration))
        run.seconds["export"] = time.monotonic() - started
    metrics["seconds"] = {k: round(v, 1) for k, v in run.seconds.items()}
    fileio.atomic_write_text(run_dir.metrics, json.dumps(metrics, indent=2))
    logging.info("selected epoch %d (%s): %s", metrics["best_epoch"], selected, metrics["val"])
    return metrics
