"""Tests for age_tf.evaluate.evaluation: metrics with known answers, predictions and every figure."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from age_tf.data import prepared as prepared_lib
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
    # Error by gender (the manifest's): every test face in one group, their counts add up.
    gender = saved["by_group"]["gender"]
    assert set(gender["groups"]) <= {"male", "female", "unknown"}
    assert sum(g["images"] for g in gender["groups"].values()) == len(pred)
    assert gender["gap"]["ci95"][0] <= gender["gap"]["mae_years"] <= gender["gap"]["ci95"][1]
    # Decisions at 13, 18, 25 scored on the test split; their rates recomputed from the file.
    decided = saved["decisions"]
    assert list(decided["thresholds"]) == ["13", "18", "25"] and "40" in decided["sweep"]
    from age_tf import decisions
    sample = json.load(open(os.path.join(model_dir, "decisions.json")))
    age_range = json.load(open(os.path.join(model_dir, "intervals.json")))["age_range"]
    for t, entry in decided["thresholds"].items():
        calls = decisions.decide(np.clip(pred["predicted_age"], *age_range), decisions.calibrate(
            sample, float(t), decided["error"]))
        assert entry["labels"]["uncertain"] == pytest.approx(np.mean(calls == "uncertain"))
        assert entry["labels"]["n_under"] == int((pred["true_age"] < float(t)).sum())
    for path in m["figures"].values():
        assert os.path.getsize(path) > 10_000


def test_every_figure_drawn_for_known_errors(trained_run, tmp_path):
    _, data_dir = trained_run
    manifest, images_dir = prepared_lib.load_manifest(data_dir, "test")
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
    # The skin-tone group each face was rendered in (the truth's) is scored like gender.
    tones = m["by_group"]["skin_tone"]
    np.testing.assert_array_equal(pred["skin_tone"], truth.set_index("row").loc[pred["row"], "skin_tone"])
    assert sum(g["images"] for g in tones["groups"].values()) == len(pred)
    assert set(tones["rendered"]["groups"]) == set(tones["groups"]) <= {"I-II", "III-IV", "V-VI"}
    # Where labels were planted wrong, the two scores differ.
    assert (pred["true_age"] != pred["rendered_age"]).any() or m["mae_years"] == m["rendered"]["mae_years"]


def test_rendered_age_from_another_set_is_refused(trained_run, tmp_path):
    model_dir, data_dir = trained_run
    other = tmp_path / "gt.csv"
    pd.DataFrame({"row": [10**9], "full_path": ["x.jpg"], "rendered_age": [3]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="gt.csv: no truth for .* rows"):
        evaluation.evaluate(_cfg(model_dir, data_dir, bootstrap=0, ground_truth=str(other)))


def test_ground_truth_of_another_release_is_refused_not_matched_by_row(trained_run, synth_dir,
                                                                       tmp_path):
    # Hostile-input item 8: rows of another release were matched by number (PLCC 0.012).
    model_dir, data_dir = trained_run
    truth = pd.read_csv(os.path.join(synth_dir, "ground_truth.csv"))
    truth["full_path"] = truth["full_path"].sample(frac=1.0, random_state=0).to_numpy()
    other = tmp_path / "ground_truth.csv"
    truth.to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"ground_truth.csv: row \d+ is .* there but .* in the "
                                         "data .* the ground truth of another release"):
        evaluation.evaluate(_cfg(model_dir, data_dir, bootstrap=0, ground_truth=str(other)))


def _other_data(data_dir, path, seen=7):
    """A prepared folder whose test split holds `seen` of data_dir's training images."""
    import shutil

    shutil.copytree(data_dir, path, ignore=shutil.ignore_patterns("*.png", "*.npz"))
    test, train = (pd.read_csv(os.path.join(data_dir, f"{s}.csv")) for s in ("test", "train"))
    pd.concat([test, train.head(seen)]).to_csv(os.path.join(path, "test.csv"), index=False)
    train.iloc[seen:].to_csv(os.path.join(path, "train.csv"), index=False)
    return str(path)


def test_another_data_folder_is_refused_or_evaluated_apart_with_a_warning(trained_run, tmp_path,
                                                                           caplog):
    # Hostile-input item 8: no warning although test images were training images, and the
    # run's own eval/ overwritten.
    model_dir, data_dir = trained_run
    other = _other_data(data_dir, tmp_path / "other")
    evaluation.evaluate(_cfg(model_dir, data_dir, bootstrap=0))
    own = open(os.path.join(model_dir, "eval", "metrics.json")).read()
    with pytest.raises(ValueError, match=r"not the run's own data .* 7 of its \d+ test images "
                                         r"were this run's training .*--other_data"):
        evaluation.evaluate(_cfg(model_dir, other, bootstrap=0))
    m = evaluation.evaluate(_cfg(model_dir, other, bootstrap=0, other_data=True))
    assert m["seen_in_training"] == 7 and not m["own_data"]
    assert m["out_dir"].startswith(os.path.join(model_dir, "eval", "other", "other-"))
    assert os.path.exists(os.path.join(m["out_dir"], "predictions.csv"))
    assert open(os.path.join(model_dir, "eval", "metrics.json")).read() == own
    assert any("7 of the" in r.getMessage() and "inflated" in r.getMessage() for r in caplog.records)


def test_a_config_written_by_another_training_is_refused(trained_run, tmp_path):
    # Hostile-input item 7: a replaced config.json labelled old weights as another backbone.
    import shutil

    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run[0], model_dir)
    config = json.load(open(os.path.join(model_dir, "config.json")))
    config["model"]["backbone"] = "efficientnet_b3"
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with pytest.raises(ValueError, match="config.json is not the configuration its model.keras "
                                         "was trained with"):
        evaluation.evaluate(_cfg(model_dir, trained_run[1], bootstrap=0))


def test_decisions_are_scored_by_band_of_true_age_banded_beside_every_face():
    """decision_metrics on known predictions: per band the wrong-side rate (with its
    interval) and the share decided, equal to a hand count; with --decision_band the cuts
    come from the faces next to T only and the every-face cut's bands stand beside them; the
    report's band table shows them."""
    from age_tf import decisions
    from age_tf.evaluate import report

    rng = np.random.default_rng(3)
    age = rng.uniform(0, 60, 3000)
    pred_age = 0.7 * age + 10 + rng.normal(0, 5, 3000)
    sample = decisions.calibration_sample(age[:1500], pred_age[:1500])
    pred = pd.DataFrame({"true_age": age[1500:], "predicted_age": pred_age[1500:],
                         "identity": np.arange(1500)})
    out = evaluation.decision_metrics(pred, sample, [18.0], 0.05, bootstrap=50, band=5.0)
    labels = out["thresholds"]["18"]["labels"]
    teens = (age[1500:] >= 16) & (age[1500:] < 18)
    cut = decisions.calibrate(sample, 18.0, 0.05, 5.0)
    calls = decisions.decide(pred_age[1500:], cut)
    assert out["thresholds"]["18"]["cut"]["band"] == 5.0
    assert labels["bands"]["16-17"]["faces"] == int(teens.sum())
    assert labels["bands"]["16-17"]["wrong"] == pytest.approx(np.mean(calls[teens] == "over"))
    lo, hi = labels["bands"]["16-17"]["wrong_ci95"]
    assert lo <= labels["bands"]["16-17"]["wrong"] <= hi
    # The every-face cut calls more 16-17-year-olds over than the banded one.
    assert labels["bands_unbanded"]["16-17"]["wrong"] > labels["bands"]["16-17"]["wrong"]
    text = report.decisions_markdown([{"backbone": "mobilenet_v2", "tune": "head",
                                       "decisions": out}])
    assert "| run | T | against | under T-5 | T-5 to T-3 | T-2 to T-1 |" in text
    assert "| mobilenet_v2, new head only | 18 | labels | " in text
