"""Tests for age_tf.evaluate.audit: held-out ranking finds planted label errors; duplicate listing."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from age_tf.evaluate import audit


def test_out_of_fold_ranking_finds_planted_mislabels():
    rng = np.random.default_rng(0)
    n, d = 600, 16
    feats = rng.normal(size=(n, d))
    true = feats @ rng.normal(size=d) * 5 + 40
    labels = true + rng.normal(0, 2, n)
    bad = rng.choice(n, 30, replace=False)
    labels[bad] += rng.choice([-1, 1], 30) * 35  # mislabelled by 35 years
    groups = np.arange(n) // 3
    pred = audit.out_of_fold_predictions(feats, labels, groups, folds=5)
    order = np.argsort(-np.abs(pred - labels))
    is_bad = np.isin(order, bad)
    p = audit.precision_at_k(is_bad, [10, 30])
    assert p[10] == 1.0 and p[30] >= 0.9


def test_out_of_fold_from_gram_matrices_equals_fitting_each_fold_directly():
    rng = np.random.default_rng(2)
    n, d, folds = 400, 12, 5
    feats = rng.normal(size=(n, d)).astype(np.float32)
    ages = rng.uniform(0, 100, n)
    groups = rng.integers(0, 90, n)
    got = audit.out_of_fold_predictions(feats, ages, groups, folds=folds, ridge=0.5, seed=3)
    # The direct fit: solve on all other folds' rows.
    uniq, inv = np.unique(groups, return_inverse=True)
    fold_of = np.random.default_rng(3).integers(0, folds, len(uniq))[inv]
    x = np.c_[feats.astype(np.float64), np.ones(n)]
    reg = 0.5 * np.eye(d + 1)
    reg[-1, -1] = 0
    want = np.zeros(n)
    for k in range(folds):
        t = fold_of == k
        w = np.linalg.solve(x[~t].T @ x[~t] + reg, x[~t].T @ ages[~t])
        want[t] = x[t] @ w
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


def test_out_of_fold_never_uses_own_group():
    # If an image's own label leaked in, a huge planted error would be partly "explained".
    feats = np.eye(20)  # each image its own feature: only its own label could predict it
    labels = 100.0 * (np.arange(20) % 2)  # 0 or 100: the others' mean is far from either
    pred = audit.out_of_fold_predictions(feats, labels, np.arange(20), folds=4, ridge=1e-6)
    assert np.abs(pred - labels).min() > 20.0


def test_surviving_duplicates_lists_cross_split_pair(prepared, truth):
    out, _ = prepared
    man = pd.concat([pd.read_csv(os.path.join(out, f"{s}.csv")).assign(split=s)
                     for s in ("train", "test")], ignore_index=True)
    import json

    images_dir = json.load(open(os.path.join(out, "report.json")))["inputs"]["images_dir"]
    pairs, counts = audit.surviving_duplicates(man, images_dir, workers=1)
    assert counts["found"] == counts["listed"] == len(pairs)
    # Pairs this close that survived prepare (its dHash limit is 8 bits, the audit's 10) must
    # be injected duplicates that prepare missed, never two different photos.
    group = dict(zip(truth["full_path"], truth["duplicate_of"].fillna("").where(
        truth["duplicate_of"].fillna("") != "", truth["full_path"])))
    close = pairs[pairs["correlation"].astype(float) >= 0.99]
    assert all(group[a] == group[b] for a, b in zip(close["path_a"], close["path_b"]))
    # ...until one is planted across subsets.
    src = man[man["split"] == "train"].iloc[0]
    planted = man.iloc[[0]].copy()
    new_path = src["path"].replace(".jpg", "_copy.jpg")
    shutil.copy(os.path.join(images_dir, src["path"]), os.path.join(images_dir, new_path))
    try:
        planted["path"], planted["split"] = new_path, "test"
        pairs, counts = audit.surviving_duplicates(pd.concat([man, planted], ignore_index=True),
                                                   images_dir, workers=1)
        hit = pairs[(pairs["path_a"].isin([src["path"], new_path])) &
                    (pairs["path_b"].isin([src["path"], new_path]))]
        assert len(hit) == 1 and hit["correlation"].iloc[0] == pytest.approx(1.0)
        assert set(hit[["split_a", "split_b"]].iloc[0]) == {"train", "test"}
        assert counts["across_splits"] == int((pairs["split_a"] != pairs["split_b"]).sum()) >= 1
        # A bounded list keeps the most similar pairs and still counts them all.
        top, top_counts = audit.surviving_duplicates(
            pd.concat([man, planted], ignore_index=True), images_dir, workers=1, max_pairs=1)
        assert len(top) == 1 and top["correlation"].iloc[0] == pairs["correlation"].max()
        assert top_counts == {**counts, "listed": 1}
    finally:
        os.remove(os.path.join(images_dir, new_path))


def test_audit_end_to_end_with_ground_truth(trained_run, synth_dir, tmp_path):
    model_dir, data_dir = trained_run
    summary = audit.audit(audit.AuditConfig(
        model_dir=model_dir, data_dir=data_dir, out_dir=str(tmp_path), folds=3, gallery=6,
        truth_csv=os.path.join(synth_dir, "ground_truth.csv"), workers=1))
    for f in ("suspected_mislabels.csv", "suspected_mislabels.png", "near_duplicate_pairs.csv", "audit.json"):
        assert os.path.exists(tmp_path / f)
    gt = summary["ground_truth"]
    assert gt["mislabelled_in_prepared_data"] > 0 and 10 in gt["precision_at_k"]
    assert [r["sigmas"] for r in gt["cleaning_thresholds"]] == list(audit.CLEAN_THRESHOLDS)
    ranked = pd.read_csv(tmp_path / "suspected_mislabels.csv")
    assert ranked["suspicion"].is_monotonic_decreasing
    assert len(ranked) == sum(len(pd.read_csv(os.path.join(data_dir, f"{s}.csv"))) for s in audit.SPLITS)


def test_the_refit_without_suspects_finds_what_one_pass_misses():
    # Issue 25: wrong labels pull a single cross-fitted pass towards themselves; refitting
    # without the suspects and judging each residual by its local scale ranks them higher.
    rng = np.random.default_rng(0)
    n, d = 1500, 20
    x = rng.normal(size=(n, d))
    true = 40 + x @ rng.normal(size=d) * 4
    noise = rng.normal(size=n) * (2 + np.clip(true, 0, None) / 10)  # errors grow with age
    labels = true + noise
    wrong = rng.choice(n, 120, replace=False)
    labels[wrong] += rng.choice([-1, 1], 120) * rng.uniform(20, 35, 120)
    groups = np.arange(n) // 2
    is_wrong = np.zeros(n, bool)
    is_wrong[wrong] = True
    one = np.abs(audit.out_of_fold_predictions(x, labels, groups, ridge=1.0) - labels)
    pred, scale, left_out = audit.robust_heldout(x, labels, groups)
    robust = np.abs(pred - labels) / scale
    at = lambda score: is_wrong[np.argsort(-score)[:120]].mean()  # noqa: E731
    assert at(robust) > at(one)
    assert left_out[wrong].mean() > 0.7 and left_out[~is_wrong].mean() < 0.05


def test_local_scale_follows_the_error_by_predicted_age():
    rng = np.random.default_rng(1)
    pred = np.r_[np.full(500, 10.0), np.full(500, 70.0)]
    res = np.r_[rng.normal(0, 2, 500), rng.normal(0, 10, 500)]
    scale = audit.local_scale(pred, res, np.ones(1000, bool), bins=2)
    assert scale[0] == pytest.approx(2, rel=0.15) and scale[-1] == pytest.approx(10, rel=0.15)


def test_the_cleaning_thresholds_trade_precision_for_recall_on_train_and_val_only():
    suspicion = np.array([5.0, 4.0, 3.2, 2.7, 2.2, 1.0, 6.0])
    is_bad = np.array([True, True, False, True, False, False, True])
    cleaned = np.array([True, True, True, True, True, True, False])  # the last is a test row
    rows = {r["sigmas"]: r for r in audit.threshold_tradeoff(suspicion, is_bad, cleaned)}
    assert rows[3.0] == {"sigmas": 3.0, "flagged": 3, "precision": 2 / 3, "recall": 2 / 3}
    assert rows[2.0]["recall"] == 1.0 and rows[4.0]["flagged"] == 1
