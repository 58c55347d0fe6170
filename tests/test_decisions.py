"""Tests for decisions at age thresholds (label-conditional split conformal cuts)."""

import math

import numpy as np
import pytest

from age_tf import decisions


def _faces(rng, n):
    """Ages and predictions of a model with regression to the mean and label noise."""
    age = rng.uniform(0, 80, n)
    pred = 0.7 * age + 10 + rng.normal(0, 6, n)
    return age, pred


def test_false_over_rate_is_at_most_the_error_promised_on_new_faces():
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(200):
        sample = decisions.calibration_sample(*_faces(rng, 300))
        cut = decisions.calibrate(sample, 18, 0.05)
        age, pred = _faces(rng, 2000)
        r = decisions.rates(age, decisions.decide(pred, cut), 18)
        rates.append((r["false_over"], r["false_under"]))
    over, under = np.mean(rates, axis=0)
    # Conformal: at most 5% on average over calibration draws, and not far below (the cut
    # is the tight order statistic, not a loose one).
    assert 0.03 < over <= 0.05 + 0.005 and 0.03 < under <= 0.05 + 0.005


def test_the_cut_is_the_finite_sample_order_statistic():
    # A poor model: children predicted 21-29, adults 1-9.
    sample = {"ages": [10] * 9 + [30] * 9, "predicted": list(range(21, 30)) + list(range(1, 10))}
    cut = decisions.calibrate(sample, 18, 0.1)  # ceil(10 * 0.9) = 9th of 9
    assert cut.over_above == 29 and cut.under_below == 1
    assert list(decisions.decide([29, 29.01, 0.99, 1, 15], cut)) == [
        "uncertain", "over", "under", "uncertain", "uncertain"]
    assert (cut.n_under, cut.n_over) == (9, 9)


def test_too_few_faces_under_the_threshold_never_say_over():
    sample = {"ages": [5, 6, 40, 41, 42], "predicted": [30, 31, 40, 41, 42]}
    cut = decisions.calibrate(sample, 18, 0.05)  # 2 faces cannot promise 5%
    assert math.isinf(cut.over_above) and "never over 18" in cut.text()
    assert set(decisions.decide([10, 50, 100], cut)) <= {"under", "uncertain"}
    assert cut.summary()["over_above"] is None


def test_crossing_cuts_decide_every_face_by_their_midpoint():
    sample = {"ages": [10] * 30 + [30] * 30,
              "predicted": [5.0] * 30 + [40.0] * 30}  # a perfect separation
    cut = decisions.calibrate(sample, 18, 0.05)
    assert cut.over_above < cut.under_below
    assert list(decisions.decide([5, 22, 23, 40], cut)) == ["under", "under", "over", "over"]


def test_the_card_sample_is_capped_by_a_random_subset():
    t, p = np.arange(12000) % 90, np.arange(12000) % 90 + 0.123456
    s = decisions.calibration_sample(t, p, max_faces=5000)
    assert s["faces"] == 12000 and s["kept"] == len(s["ages"]) == len(s["predicted"]) == 5000
    assert s["predicted"][0] == round(s["ages"][0] + 0.123456, 2)
    assert len(set(s["ages"])) == 90  # a random subset, not the first 5000


@pytest.mark.parametrize("values, message", [(["x"], "not an age"), (["0"], "0-130"),
                                             (["200"], "0-130")])
def test_bad_thresholds_name_the_flag(values, message):
    with pytest.raises(ValueError, match=f"--thresholds.*{message}"):
        decisions.parse_thresholds(values)


def test_bad_error_rate_names_the_flag():
    with pytest.raises(ValueError, match="--decision_error"):
        decisions.calibrate({"ages": [1], "predicted": [1]}, 18, 0.6)


def test_challenge_rate_counts_faces_under_t_estimated_at_t_plus_7():
    true = np.array([10, 15, 17, 17, 30])
    pred = np.array([26, 24.9, 25, 12, 40])
    assert decisions.challenge_rate(true, pred, 18) == pytest.approx(2 / 4)
    assert math.isnan(decisions.challenge_rate([30], [40], 18))
