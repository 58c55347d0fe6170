"""Tests for age_tf.train.intervals: conformal widths per predicted-age bin, coverage, error by age."""

import numpy as np
import pytest

from age_tf import metrics
from age_tf.train import intervals


def _noisy(n, seed, scale_of=lambda p: 2 + p / 10):
    """Predictions with a spread that grows with age, as age estimates' does."""
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, 95, n)
    true = np.maximum(pred + rng.normal(0, 1, n) * scale_of(pred), 0)  # no negative ages
    return true, pred


def test_conformal_widths_cover_new_data_at_the_asked_rate_in_every_bin():
    cal = intervals.calibrate(*_noisy(4000, 0), coverage=0.9)
    true, pred = _noisy(20000, 1)
    low, high = intervals.interval(pred, cal)
    inside = (true >= low) & (true <= high)
    assert 0.885 < inside.mean() < 0.92
    bins = np.searchsorted(cal["edges"], pred, side="right")
    for b in np.unique(bins):
        assert 0.86 < inside[bins == b].mean() < 0.94, b
    # Conditioned on the prediction: the young get narrower intervals than the old.
    assert cal["half_widths"][0] < cal["half_widths"][-1] / 2


def test_the_conformal_quantile_is_the_finite_sample_one():
    # n = 9 residuals 1..9 at 90%: ceil(10 * 0.9) = 9th smallest, i.e. 9 (not the 0.9 quantile 8.2).
    pred = np.full(9, 35.0)
    true = pred + np.arange(1, 10)
    cal = intervals.calibrate(true, pred, 0.9, edges=(), min_per_bin=1)
    assert cal["half_widths"] == [9.0]


def test_small_bins_are_merged_until_each_has_enough_faces():
    pred = np.r_[np.full(5, 5.0), np.full(100, 35.0), np.full(100, 75.0)]
    cal = intervals.calibrate(pred + 1, pred, edges=(10.0, 20.0, 30.0, 40.0, 70.0), min_per_bin=30)
    assert min(cal["counts"]) >= 30 and sum(cal["counts"]) == 205
    assert len(cal["half_widths"]) == len(cal["edges"]) + 1


def test_interval_low_end_is_never_below_zero():
    cal = intervals.calibrate(np.array([0.0, 30.0]), np.array([10.0, 10.0]), edges=(), min_per_bin=1)
    low, high = intervals.interval(np.array([1.0]), cal)
    assert low[0] == 0.0 and high[0] == pytest.approx(21.0)


@pytest.mark.parametrize("coverage", [0, 1, 1.5, float("nan")])
def test_bad_coverage_names_the_flag(coverage):
    with pytest.raises(ValueError, match="--interval_coverage"):
        intervals.calibrate(np.ones(3), np.ones(3), coverage)


def test_coverage_and_error_by_decade():
    true = np.array([5, 15, 15, 95, 100])
    pred = np.array([7, 14, 25, 90, 99])
    rep = metrics.coverage_report(true, pred - 2, pred + 2)
    assert rep["by_decade"]["10-19"] == {"images": 2, "coverage": 0.5}
    assert rep["by_decade"]["90-100"]["images"] == 2 and rep["mean_width"] == 4
    err = metrics.error_by_decade(true, pred)
    assert err["10-19"]["bias_years"] == pytest.approx(4.5)  # (-1 + 10) / 2: over-estimates
    assert err["10-19"]["mae_years"] == pytest.approx(5.5)
    assert set(err) == {"0-9", "10-19", "90-100"}


def test_too_few_validation_faces_state_what_their_intervals_guarantee():
    # Hostile-input item 12: "90%" intervals calibrated on 1-3 faces, without a word: with
    # n faces the guarantee is n / (n + 1), not 0.9.
    assert intervals.faces_needed(0.9) == 9 and intervals.guarantee(9, 0.9) == 0.9
    c = intervals.calibrate([30.0, 40.0, 50.0], [31.0, 45.0, 20.0], coverage=0.9)
    assert c["guarantee"] == 0.75 and c["half_widths"] == [30.0]
    many = intervals.calibrate(np.arange(100.0), np.arange(100.0) + 1, coverage=0.9)
    assert "guarantee" not in many


def test_served_ages_and_intervals_stay_within_the_training_ages():
    # Hostile-input item 12: a 1-epoch model answered 196.7 years, interval 0.0-632.0.
    import tensorflow as tf

    from age_tf.train import export

    c = {"coverage": 0.9, "edges": [20.0], "half_widths": [5.0, 10.0], "age_range": [1.0, 95.0]}
    ages = np.array([-3.0, 10.0, 50.0, 93.0, 196.7])
    low, high = intervals.interval(ages, c)
    assert list(low) == [1.0, 5.0, 40.0, 83.0, 85.0] and list(high) == [6.0, 15.0, 60.0, 95.0, 95.0]
    served = export.interval_fn(c)(tf.constant(ages, tf.float32))
    assert np.allclose(served["age"], [1.0, 10.0, 50.0, 93.0, 95.0])
    assert np.allclose(served["age_low"], low) and np.allclose(served["age_high"], high)
    old = {"coverage": 0.9, "edges": [20.0], "half_widths": [5.0, 10.0]}  # before age_range
    assert list(intervals.interval(np.array([50.0]), old)[1]) == [60.0]
