"""Tests for age_tf.train.callbacks: correlation logs, history on resume, best weights, TensorBoard."""

import glob
import os

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from age_tf.train import callbacks, training


def test_correlation_callback_equals_scipy():
    rng = np.random.default_rng(0)
    y = rng.integers(5, 90, 100) / 100
    p = y + rng.normal(0, 0.1, 100)
    cb = callbacks.CorrelationCallback(lambda: (y, p))
    logs = {"loss": 1.0}
    cb.on_epoch_end(0, logs)
    assert logs["val_plcc"] == pytest.approx(scipy.stats.pearsonr(y, p)[0], abs=1e-12)
    assert logs["val_srocc"] == pytest.approx(scipy.stats.spearmanr(y, p)[0], abs=1e-12)
    assert logs["val_mae_years"] == pytest.approx(np.abs(p - y).mean() * 100)
    assert logs["val_loss"] == pytest.approx(np.abs(p - y).mean())


def test_epoch_callbacks_run_log_producers_first_and_return_the_logs():
    """Whatever the order given, the tracker-like callback sees the correlations, and the
    loop gets the completed logs back without copying them from the callback."""
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.update(logs)

    y = np.linspace(0.1, 0.9, 20)
    cl = callbacks.EpochCallbacks(
        [Spy(), callbacks.CorrelationCallback(lambda: (y, y ** 2))], model=keras.Sequential())
    logs = cl.on_epoch_end(0, {"loss": 0.5})
    assert seen["val_srocc"] == pytest.approx(1.0)
    assert logs["val_srocc"] == pytest.approx(1.0) and logs["loss"] == 0.5


def test_history_csv_drops_rows_past_resume_point(tmp_path):
    path = str(tmp_path / "history.csv")
    h = callbacks.HistoryCSV(path, 0)
    for e in range(3):
        h.on_epoch_end(e, {"loss": float(e)})
    resumed = callbacks.HistoryCSV(path, 2)  # checkpoint says 2 epochs done
    resumed.on_epoch_end(2, {"loss": 9.0})
    df = pd.read_csv(path)
    assert df["epoch"].tolist() == [0, 1, 2] and df["loss"].tolist() == [0.0, 1.0, 9.0]


def _tracker(state, patience=0, min_delta=0.0, mode="max"):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    tracker = callbacks.RunTracker(state, "val_srocc", mode, patience, min_delta)
    tracker.set_model(model)
    model.stop_training = False
    return tracker, model


def test_run_tracker_best_and_early_stopping_live_in_the_state():
    state = training.RunState()
    tracker, model = _tracker(state, patience=2, min_delta=0.05)
    for epoch, value in enumerate([0.5, 0.52, float("nan")]):
        tracker.on_epoch_end(epoch, {"val_srocc": value})
    # 0.52 is the best value but not by min_delta; NaN never counts as better.
    assert float(state.best_value.numpy()) == 0.52 and int(state.best_epoch.numpy()) == 1
    assert int(state.wait.numpy()) == 2 and model.stop_training
    # A tracker made after a restart reads the same state: nothing kept in Python.
    state2 = training.RunState()
    state2.stop_reference.assign(0.5)
    state2.wait.assign(1)
    again, model2 = _tracker(state2, patience=2, min_delta=0.05)
    again.on_epoch_end(2, {"val_srocc": 0.51})
    assert model2.stop_training
    with pytest.raises(KeyError, match="--monitor='val_srocc' is not among the logs"):
        again.on_epoch_end(3, {"loss": 1.0})


def test_best_weights_named_by_epoch_and_pruned(tmp_path):
    state = training.RunState()
    tracker, model = _tracker(state)
    best = callbacks.BestWeights(str(tmp_path / "best"), state)
    best.set_model(model)
    for epoch, value in enumerate([0.5, 0.4, 0.6]):
        tracker.on_epoch_end(epoch, {"val_srocc": value})
        best.on_epoch_end(epoch, {"val_srocc": value})
    assert sorted(os.listdir(tmp_path / "best")) == ["epoch-0000.weights.h5", "epoch-0002.weights.h5"]
    callbacks.BestWeights.prune(str(tmp_path / "best"), 2)
    assert os.listdir(tmp_path / "best") == ["epoch-0002.weights.h5"]


def test_tensorboard_logger_writes_event_files(tmp_path):
    tb = callbacks.TensorBoardLogger(str(tmp_path), "--epochs=2")
    tb.on_train_begin()
    tb.on_epoch_end(0, {"loss": 0.3, "val_loss": 0.4, "val_plcc": 0.5, "learning_rate": 1e-3})
    tb.on_train_end()
    from tensorboard.backend.event_processing import event_accumulator

    for run, tags in (("train", {"loss", "learning_rate", "flags"}), ("validation", {"loss", "plcc"})):
        files = glob.glob(str(tmp_path / run / "events.*"))
        acc = event_accumulator.EventAccumulator(files[0], size_guidance={"tensors": 0})
        acc.Reload()
        assert tags <= set(acc.Tags()["tensors"]), acc.Tags()["tensors"]
