"""Tests for age_tf.callbacks: correlation logs, history on resume, best weights, TensorBoard."""

import glob
import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from age_tf import callbacks


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
    assert cb.last["val_plcc"] == logs["val_plcc"]


def test_correlation_reaches_other_callbacks_through_callback_list():
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.update(logs)

    y = np.linspace(0.1, 0.9, 20)
    cl = keras.callbacks.CallbackList(
        [callbacks.CorrelationCallback(lambda: (y, y ** 2)), Spy()], model=keras.Sequential())
    cl.on_epoch_end(0, {"loss": 0.5})
    assert seen["val_srocc"] == pytest.approx(1.0)


def test_history_csv_drops_rows_past_resume_point(tmp_path):
    path = str(tmp_path / "history.csv")
    h = callbacks.HistoryCSV(path, 0)
    for e in range(3):
        h.on_epoch_end(e, {"loss": float(e)})
    resumed = callbacks.HistoryCSV(path, 2)  # checkpoint says 2 epochs done
    resumed.on_epoch_end(2, {"loss": 9.0})
    df = pd.read_csv(path)
    assert df["epoch"].tolist() == [0, 1, 2] and df["loss"].tolist() == [0.0, 1.0, 9.0]


def test_best_weights_saves_on_improvement_and_remembers(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "best.weights.h5")
    cb = callbacks.BestWeights(path, "val_srocc", "max")
    cb.set_model(model)
    cb.on_epoch_end(0, {"val_srocc": 0.5})
    first = os.path.getmtime(path)
    cb.on_epoch_end(1, {"val_srocc": 0.4})  # worse: not saved
    assert os.path.getmtime(path) == first
    again = callbacks.BestWeights(path, "val_srocc", "max")  # a resumed run
    assert again.best == 0.5 and again.best_epoch == 0
    again.set_model(model)
    again.on_epoch_end(2, {"val_srocc": float("nan")})  # NaN never counts as better
    assert json.load(open(path + ".json"))["epoch"] == 0
    with pytest.raises(KeyError, match="--monitor='val_srocc' is not among the logs"):
        again.on_epoch_end(3, {"loss": 1.0})


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
