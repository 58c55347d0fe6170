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


def test_a_band_keeps_the_promise_for_the_faces_next_to_the_threshold():
    """Averaged over everyone under 18, the every-face cut keeps 5% while 16-17-year-olds
    are called over far more often (children are never called over); calibrated on the faces
    within 5 years of 18 only, the banded cut keeps 5% for 13-17-year-olds."""
    rng = np.random.default_rng(1)
    near_rates, every_rates = [], []
    for _ in range(100):
        sample = decisions.calibration_sample(*_faces(rng, 1500))
        age, pred = _faces(rng, 4000)
        for band, store in ((5.0, near_rates), (None, every_rates)):
            cut = decisions.calibrate(sample, 18, 0.05, band)
            bands = decisions.band_rates(age, decisions.decide(pred, cut), 18)
            teens = (age >= 13) & (age < 18)
            calls = decisions.decide(pred[teens], cut)
            store.append((np.mean(calls == decisions.OVER), bands["16-17"]["wrong"]))
    assert np.mean([r[0] for r in near_rates]) <= 0.05 + 0.005
    assert np.mean([r[0] for r in every_rates]) > 0.08  # the unbanded cut breaks it there
    assert np.mean([r[1] for r in every_rates]) > np.mean([r[1] for r in near_rates])


def test_the_bands_of_a_threshold_and_their_rates():
    assert [b[0] for b in decisions.age_bands(18)] == [
        "under 13", "13-15", "16-17", "18-19", "20-22", "23+"]
    ages = np.array([5, 14, 17, 17, 18, 30])
    calls = np.array(["under", "over", "over", "uncertain", "under", "over"], object)
    r = decisions.band_rates(ages, calls, 18)
    assert r["16-17"] == {"side": "under", "faces": 2, "wrong": 0.5, "decided": 0.5}
    assert r["13-15"]["wrong"] == 1.0 and r["under 13"]["wrong"] == 0.0
    assert r["18-19"] == {"side": "over", "faces": 1, "wrong": 1.0, "decided": 1.0}
    assert math.isnan(r["20-22"]["wrong"]) and r["20-22"]["faces"] == 0
    cut = decisions.calibrate({"ages": [15, 16, 17, 40], "predicted": [1, 2, 3, 4]}, 18, 0.2,
                              band=2)
    assert (cut.n_under, cut.n_over, cut.band) == (2, 0, 2.0)  # 16 and 17; none of 18-19
    assert "faces aged 16 to 18 (not 18) called over" in cut.text()
    with pytest.raises(ValueError, match="--decision_band must be a positive"):
        decisions.calibrate({"ages": [1], "predicted": [1]}, 18, 0.05, band=0)
