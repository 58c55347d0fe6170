"""Tests for age_tf.evaluate.evaluation: metrics with known answers, predictions and every figure."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from age_tf.data import pipeline
from age_tf.evaluate import evaluation


def _cfg(model_dir, data_dir, **kw):
    return evaluation.EvaluateConfig(model_dir=model_dir, data_dir=data_dir, split="test", **kw)


def test_compute_metrics_known_answers():
    pred = pd.DataFrame({"true_age": [10, 20, 30, 40], "predicted_age": [12.0, 20.0, 36.0, 40.0]})
    m = evaluation.compute_metrics(pred, bootstrap=0)
    assert m["loss"] == pytest.approx(0.02)  # MAE 2 years = 0.02 in label units
    assert m["mae_years"] == pytest.approx(2.0) and m["cs5"] == pytest.approx(0.75)
    assert m["images"] == 4 and "plcc_ci95" not in m


def test_evaluate_writes_predictions_metrics_figures(trained_run):
    model_dir, data_dir = trained_run
    m = evaluation.evaluate(_cfg(model_dir, data_dir, bootstrap=100))
    test = pd.read_csv(os.path.join(data_dir, "test.csv"))
    pred = pd.read_csv(os.path.join(model_dir, "eval", "predictions.csv"))
    assert pred["path"].tolist() == test["path"].tolist()
    assert (pred["abs_error"] - (pred["predicted_age"] - pred["true_age"]).abs()).abs().max() < 1e-9
    saved = json.load(open(os.path.join(model_dir, "eval", "metrics.json")))
    for key in ("loss", "mae_years", "rmse_years", "plcc", "srocc", "cs5", "plcc_ci95", "srocc_ci95"):
        assert key in saved
    assert saved["mae_years"] == pytest.approx(pred["abs_error"].mean())
    lo, hi = saved["srocc_ci95"]
    assert lo <= saved["srocc"] <= hi
    for path in m["figures"].values():
        assert os.path.getsize(path) > 10_000


def test_every_figure_drawn_for_known_errors(trained_run, tmp_path):
    _, data_dir = trained_run
    manifest, images_dir = pipeline.load_manifest(data_dir, "test")
    pred = manifest[["path", "age"]].rename(columns={"age": "true_age"}).head(30).copy()
    offsets = np.r_[np.full(10, 45.0), np.full(10, 17.0), np.zeros(10)]
    pred["predicted_age"] = pred["true_age"] + offsets
    pred["abs_error"] = offsets
    figs = evaluation.write_figures(pred, images_dir, str(tmp_path), "test model")
    assert set(figs) == {"scatter", "mae_by_decade", "worst", "mid"}
    for path in figs.values():
        assert os.path.getsize(path) > 10_000


def test_load_run_error_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.keras not found: --model_dir must be"):
        evaluation.load_run(str(tmp_path))


def test_rendered_age_scores_the_model_not_the_labels(trained_run, synth_dir, truth):
    model_dir, data_dir = trained_run
    m = evaluation.evaluate(_cfg(model_dir, data_dir, bootstrap=20,
                                 ground_truth=os.path.join(synth_dir, "ground_truth.csv")))
    pred = pd.read_csv(os.path.join(model_dir, "eval", "predictions.csv"))
    rendered = truth.set_index("row").loc[pred["row"], "rendered_age"].to_numpy(float)
    np.testing.assert_array_equal(pred["rendered_age"], rendered)
    assert m["rendered"]["mae_years"] == pytest.approx(np.mean(np.abs(pred["predicted_age"] - rendered)))
    assert m["rendered"]["plcc"] == pytest.approx(np.corrcoef(pred["predicted_age"], rendered)[0, 1])
    assert len(m["rendered"]["plcc_ci95"]) == 2
    # Where labels were planted wrong, the two scores differ.
    assert (pred["true_age"] != pred["rendered_age"]).any() or m["mae_years"] == m["rendered"]["mae_years"]


def test_rendered_age_from_another_set_is_refused(trained_run, tmp_path):
    model_dir, data_dir = trained_run
    other = tmp_path / "gt.csv"
    pd.DataFrame({"row": [10**9], "rendered_age": [3]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="gt.csv: no rendered age for some rows"):
        evaluation.evaluate(_cfg(model_dir, data_dir, bootstrap=0, ground_truth=str(other)))
