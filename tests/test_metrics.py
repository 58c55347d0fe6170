"""Tests for age_tf.metrics against scipy and known answers."""

import numpy as np
import pytest
import scipy.stats

from age_tf import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plcc_srocc_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 30, 200).astype(float)  # many ties, like integer ages
    p = t + rng.normal(0, 8, 200)
    p[:20] = np.round(p[:20])  # ties in predictions too
    assert metrics.plcc(t, p) == pytest.approx(scipy.stats.pearsonr(t, p)[0], abs=1e-12)
    assert metrics.srocc(t, p) == pytest.approx(scipy.stats.spearmanr(t, p)[0], abs=1e-12)


def test_constant_prediction_gives_nan():
    assert np.isnan(metrics.plcc([1, 2, 3], [5, 5, 5]))
    assert np.isnan(metrics.srocc([1, 2, 3], [5, 5, 5]))


def test_regression_metrics_known_values():
    m = metrics.regression_metrics([10, 20, 30, 40], [12, 20, 36, 40])
    assert m["mae_years"] == pytest.approx(2.0)
    assert m["rmse_years"] == pytest.approx(np.sqrt((4 + 36) / 4))
    assert m["cs5"] == pytest.approx(0.75)
    assert m["srocc"] == pytest.approx(1.0)


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 80, 300)
    p = t + rng.normal(0, 10, 300)
    lo, hi = metrics.bootstrap_ci(t, p, metrics.plcc, n=300)
    assert lo < metrics.plcc(t, p) < hi and hi - lo < 0.1


def test_cluster_bootstrap_by_identity_is_wider_when_photos_cluster():
    # 40 people, 10 photos each; each person's photos share a random offset, so the
    # effective sample is the 40 people, not the 400 photos.
    rng = np.random.default_rng(1)
    person = np.repeat(np.arange(40), 10)
    t = rng.uniform(10, 80, 40)[person] + rng.normal(0, 1, 400)
    p = t + rng.normal(0, 15, 40)[person] + rng.normal(0, 2, 400)
    lo_i, hi_i = metrics.bootstrap_ci(t, p, metrics.plcc, n=400, seed=0)
    lo_g, hi_g = metrics.bootstrap_ci(t, p, metrics.plcc, n=400, seed=0, groups=person)
    assert lo_g < metrics.plcc(t, p) < hi_g
    assert (hi_g - lo_g) > 2 * (hi_i - lo_i)


def test_cluster_bootstrap_resamples_whole_groups():
    # Two groups whose values are constant within a group: every resample holds whole groups,
    # so the mean takes only the values 1, 2 and 3 (both groups once, or one group twice).
    groups = np.array(["a", "a", "b", "b"])
    t = np.array([1.0, 1.0, 3.0, 3.0])
    lo, hi = metrics.bootstrap_ci(t, t, lambda a, b: float(a.mean()), n=200, groups=groups)
    assert lo == 1.0 and hi == 3.0


def test_error_by_group_and_the_gap_between_groups():
    t = np.array([10.0, 20.0, 30.0, 40.0] * 5)
    groups = np.array(["a", "a", "b", "b"] * 5)
    p = t + np.where(groups == "a", 1.0, -4.0)
    r = metrics.error_by_group(t, p, groups, low=p - 2, high=p + 2,
                               identities=np.arange(20) // 2, bootstrap=50)
    assert r["groups"]["a"] == {"images": 10, "mae_years": 1.0, "bias_years": 1.0, "cs5": 1.0,
                                "coverage": 1.0}
    assert r["groups"]["b"]["bias_years"] == -4.0 and r["groups"]["b"]["coverage"] == 0.0
    assert r["gap"]["between"] == ["b", "a"] and r["gap"]["mae_years"] == 3.0
    assert r["gap"]["ci95"] == [3.0, 3.0]  # every resample has the same errors
    # Fewer faces than min_images: the group is reported, but no gap is claimed.
    small = metrics.error_by_group(t[:6], p[:6], groups[:6], bootstrap=0)
    assert "gap" not in small and set(small["groups"]) == {"a", "b"}
