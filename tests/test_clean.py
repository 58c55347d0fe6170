"""Tests for age_tf.evaluate.clean: cleaned copies of prepared data, and Table 3's arithmetic."""

import filecmp
import os

import numpy as np
import pandas as pd
import pytest

from age_tf.errors import DataError
from age_tf.evaluate import clean


@pytest.mark.parametrize("action", clean.ACTIONS)
def test_clean_changes_only_train_and_val_and_lists_every_change(trained_run, tmp_path, action):
    model_dir, data_dir = trained_run
    out = str(tmp_path / action)
    s = clean.clean(clean.CleanConfig(model_dir=model_dir, data_dir=data_dir, out_dir=out,
                                      action=action, sigmas=1.0))
    # The test split is never touched: the same bytes.
    assert filecmp.cmp(os.path.join(data_dir, "test.csv"), os.path.join(out, "test.csv"), shallow=False)
    changes = pd.read_csv(os.path.join(out, "changes.csv"))
    assert len(changes) == s["changed"] > 0 and set(changes["split"]) <= {"train", "val"}
    low, high = s["threshold_years"]
    assert (changes["residual"].abs() > low).all() and low <= high
    for split in ("train", "val"):
        before = pd.read_csv(os.path.join(data_dir, f"{split}.csv"))
        after = pd.read_csv(os.path.join(out, f"{split}.csv"))
        mine = changes[changes["split"] == split].set_index("row")
        if action == "drop":
            assert set(before["row"]) - set(after["row"]) == set(mine.index)
        else:
            assert after["row"].tolist() == before["row"].tolist()
            hit = after["row"].isin(mine.index)
            assert (after.loc[hit, "age"].to_numpy() == mine.loc[after.loc[hit, "row"], "new_age"]).all()
            assert (after.loc[~hit, "age"] == before.loc[~hit, "age"]).all()
    # The source folder is read only, and an existing result is not overwritten silently.
    with pytest.raises(DataError, match="--overwrite"):
        clean.clean(clean.CleanConfig(model_dir=model_dir, data_dir=data_dir, out_dir=out))
    with pytest.raises(ValueError, match="must differ from --data_dir"):
        clean.clean(clean.CleanConfig(model_dir=model_dir, data_dir=data_dir, out_dir=data_dir))


def test_oracle_labels_are_the_rendered_ages(trained_run, synth_dir, truth, tmp_path):
    _, data_dir = trained_run
    out = str(tmp_path / "oracle")
    clean.oracle_labels(data_dir, os.path.join(synth_dir, "ground_truth.csv"), out)
    assert filecmp.cmp(os.path.join(data_dir, "test.csv"), os.path.join(out, "test.csv"), shallow=False)
    train = pd.read_csv(os.path.join(out, "train.csv"))
    want = truth.set_index("row").loc[train["row"], "rendered_age"].to_numpy()
    np.testing.assert_array_equal(train["age"], want)


def test_gap_shares_known_answers():
    t = np.array([10.0, 20, 30, 40])
    oracle = t.copy()
    noisy = t + np.array([4, -4, 4, -4])  # MAE 4
    half = t + np.array([2, -2, 2, -2])  # MAE 2: half the gap
    s = clean.gap_shares(t, noisy, half, oracle)
    assert s["mae"] == pytest.approx(0.5)
    assert clean.gap_shares(t, noisy, oracle, oracle)["mae"] == pytest.approx(1.0)
    assert clean.gap_shares(t, noisy, noisy, oracle)["plcc"] == pytest.approx(0.0)


def test_table3_pairs_runs_and_refuses_mismatched_predictions(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    t = rng.uniform(0, 90, n)
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(n)], "identity": np.arange(n) // 2,
                          "rendered_age": t})
    runs = {}
    for name, noise in (("noisy", 12.0), ("drop", 7.0), ("oracle", 2.0)):
        d = tmp_path / name / "eval"
        d.mkdir(parents=True)
        frame.assign(predicted_age=t + rng.normal(0, noise, n)).to_csv(d / "predictions.csv", index=False)
        runs[name] = str(tmp_path / name)
    r = clean.table3(runs, bootstrap=100)
    assert r["rows"]["noisy"]["mae_years"] > r["rows"]["drop"]["mae_years"] > r["rows"]["oracle"]["mae_years"]
    share = r["shares"]["drop"]
    assert 0 < share["mae"] < 1 and share["mae_ci95"][0] <= share["mae"] <= share["mae_ci95"][1]
    text = clean.table3_markdown(r, {"drop": "cleaned: dropped"})
    assert "| cleaned: dropped |" in text and "share of the noisy-to-oracle MAE gap" in text
    # Predictions of other images cannot be compared.
    frame.iloc[::-1].assign(predicted_age=t).to_csv(tmp_path / "drop" / "eval" / "predictions.csv", index=False)
    with pytest.raises(ValueError, match="not the same images"):
        clean.table3(runs, bootstrap=10)
