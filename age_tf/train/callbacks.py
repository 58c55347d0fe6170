"""Keras callbacks of the training loop: validation correlations, history, best model, TensorBoard."""

from __future__ import annotations

import math
import os
from typing import Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf import fileio, labels, metrics


class LogsProducer(keras.callbacks.Callback):
    """A callback that adds values to the epoch's logs (EpochCallbacks runs it first)."""


class EpochCallbacks(keras.callbacks.CallbackList):
    """The training loop's callbacks: those that add to the logs run before the others,
    whatever order they are given in, and on_epoch_end returns the completed logs (Keras'
    CallbackList hands its callbacks a copy, which the caller never sees)."""

    def __init__(self, callbacks, model):
        callbacks = list(callbacks)
        ordered = ([c for c in callbacks if isinstance(c, LogsProducer)]
                   + [c for c in callbacks if not isinstance(c, LogsProducer)])
        super().__init__(ordered, model=model)

    def on_epoch_end(self, epoch, logs=None) -> dict:
        logs = dict(logs or {})
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
        return logs


class CorrelationCallback(LogsProducer):
    """At each epoch's end, predicts the validation set and adds to the logs:
    val_loss (MAE in label units, the study's loss), val_mae_years, val_plcc, val_srocc,
    so that best-model selection, early stopping and TensorBoard see them.
    """

    def __init__(self, predict_fn: Callable[[], tuple[np.ndarray, np.ndarray]], prefix: str = "val_"):
        """Args:
          predict_fn: returns (labels, predictions) of the whole validation set, in label
            units; the trainer's runs under the distribution strategy.
          prefix: log key prefix.
        """
        super().__init__()
        self.predict_fn = predict_fn
        self.prefix = prefix

    def on_epoch_end(self, epoch, logs=None):
        y_true, y_pred = self.predict_fn()
        years = metrics.regression_metrics(labels.to_years(y_true), labels.to_years(y_pred))
        values = {
            "loss": metrics.mae(y_true, y_pred),
            "mae_years": years["mae_years"],
            "plcc": years["plcc"],
            "srocc": years["srocc"],
        }
        if logs is not None:
            logs.update({self.prefix + k: v for k, v in values.items()})


class HistoryCSV(keras.callbacks.Callback):
    """history.csv, one row per epoch, rewritten atomically; a resumed run drops rows past
    its checkpoint so the file never holds an epoch twice."""

    def __init__(self, path: str, initial_epoch: int):
        super().__init__()
        self.path = path
        self.rows: list[dict] = []
        if os.path.exists(path) and initial_epoch > 0:
            old = pd.read_csv(path)
            self.rows = old[old["epoch"] < initial_epoch].to_dict("records")

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        fileio.atomic_write_text(self.path, pd.DataFrame(self.rows).to_csv(index=False))


class RunTracker(keras.callbacks.Callback):
    """Tracks the monitored value in the run state: the best value and its epoch (any
    improvement), and early stopping (an improvement by more than min_delta resets the wait;
    `patience` epochs without one stop training). All of it lives in the checkpointed
    RunState, so a resumed run stops exactly where an uninterrupted one would."""

    def __init__(self, state, monitor: str, mode: str, patience: int = 0, min_delta: float = 0.0):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.state, self.monitor, self.mode = state, monitor, mode
        self.patience, self.min_delta = patience, abs(min_delta)

    def _better(self, value: float, reference: float, delta: float = 0.0) -> bool:
        if math.isnan(value):
            return False
        if math.isnan(reference):
            return True
        return value < reference - delta if self.mode == "min" else value > reference + delta

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"--monitor={self.monitor!r} is not among the logs {sorted(logs or {})}")
        value, s = float(value), self.state
        if self._better(value, float(s.best_value.numpy())):
            s.best_value.assign(value)
            s.best_epoch.assign(epoch)
        if not self.patience:
            return
        if self._better(value, float(s.stop_reference.numpy()), self.min_delta):
            s.stop_reference.assign(value)
            s.wait.assign(0)
        else:
            s.wait.assign_add(1)
            if int(s.wait.numpy()) >= self.patience:
                self.model.stop_training = True


class BestWeights(keras.callbacks.Callback):
    """Saves the weights of each epoch that the run state marks as the best so far, as
    `<folder>/epoch-NNNN.weights.h5`. Named by epoch, so that a file written just before a
    crash can never pass for the best of a resumed run: only the state's best epoch counts,
    and `prune` removes the others once the state is checkpointed."""

    def __init__(self, folder: str, state):
        super().__init__()
        self.folder, self.state = folder, state
        os.makedirs(folder, exist_ok=True)

    @staticmethod
    def path_for(folder: str, epoch: int) -> str:
        return os.path.join(folder, f"epoch-{epoch:04d}.weights.h5")

    @staticmethod
    def prune(folder: str, keep_epoch: int) -> None:
        keep = os.path.basename(BestWeights.path_for(folder, keep_epoch))
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if name != keep:
                os.remove(os.path.join(folder, name))

    def on_epoch_end(self, epoch, logs=None):
        if int(self.state.best_epoch.numpy()) != epoch:
            return
        path = self.path_for(self.folder, epoch)
        with fileio.atomic_path(path) as tmp:
            self.model.save_weights(tmp)
        logging.info("epoch %d: best so far (%.5f), saved %s", epoch + 1,
                     float(self.state.best_value.numpy()), path)


class TensorBoardLogger(keras.callbacks.Callback):
    """Per-epoch scalars to <log_dir>/train and <log_dir>/validation (same tag in both, so
    TensorBoard overlays train and val curves), learning rate, and the run's flags as text."""

    def __init__(self, log_dir: str, flags_text: str = "", initial_epoch: int = 0):
        super().__init__()
        self.train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
        self.flags_text = flags_text
        self.initial_epoch = initial_epoch

    def on_train_begin(self, logs=None):
        if self.flags_text:
            with self.train_writer.as_default():
                # Markdown code block: TensorBoard renders text summaries as markdown.
                tf.summary.text("flags", "```\n" + self.flags_text + "\n```", step=self.initial_epoch)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            is_val = key.startswith("val_")
            writer = self.val_writer if is_val else self.train_writer
            with writer.as_default():
                tf.summary.scalar(key[4:] if is_val else key, float(value), step=epoch + 1)
        self.train_writer.flush()
        self.val_writer.flush()

    def on_train_end(self, logs=None):
        self.train_writer.close()
        self.val_writer.close()
