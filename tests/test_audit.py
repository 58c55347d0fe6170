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
    pairs = audit.surviving_duplicates(man, images_dir, workers=1)
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
        pairs = audit.surviving_duplicates(pd.concat([man, planted], ignore_index=True), images_dir,
                                           workers=1)
        hit = pairs[(pairs["path_a"].isin([src["path"], new_path])) &
                    (pairs["path_b"].isin([src["path"], new_path]))]
        assert len(hit) == 1 and hit["correlation"].iloc[0] == pytest.approx(1.0)
        assert set(hit[["split_a", "split_b"]].iloc[0]) == {"train", "test"}
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
    ranked = pd.read_csv(tmp_path / "suspected_mislabels.csv")
    assert ranked["suspicion"].is_monotonic_decreasing
    assert len(ranked) == sum(len(pd.read_csv(os.path.join(data_dir, f"{s}.csv"))) for s in audit.SPLITS)
