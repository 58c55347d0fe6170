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
