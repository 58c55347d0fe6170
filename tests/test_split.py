"""Tests for age_tf.data.split: stratified, identity-disjoint, reproducible."""

import numpy as np
import pytest

from age_tf.data import split


def _data(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n // 4, n)  # ~4 images a person
    centre = np.clip(rng.normal(38, 15, n // 4), 0, 100)
    ages = np.clip(np.round(centre[ids] + rng.normal(0, 4, n)), 0, 100).astype(int)
    return ages, ids


def test_split_is_identity_disjoint_and_sized():
    ages, ids = _data()
    assign = split.stratified_group_split(ages, ids, (0.6, 0.2, 0.2), seed=1)
    sets = [set(ids[assign == s]) for s in range(3)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    shares = np.bincount(assign, minlength=3) / len(ages)
    np.testing.assert_allclose(shares, [0.6, 0.2, 0.2], atol=0.01)


def test_age_histograms_agree():
    ages, ids = _data()
    assign = split.stratified_group_split(ages, ids, (0.6, 0.2, 0.2), seed=1)
    bins = split.age_bins(ages)
    hists = [np.bincount(bins[assign == s], minlength=21) / (assign == s).sum() for s in range(3)]
    # Per 5-year bin the shares agree within 1 percentage point.
    assert np.abs(hists[0] - hists[1]).max() < 0.01
    assert np.abs(hists[0] - hists[2]).max() < 0.01
    # A random identity split, for contrast, is much worse on the same data.
    rng = np.random.default_rng(1)
    rand = rng.choice(3, size=ids.max() + 1, p=[0.6, 0.2, 0.2])[ids]
    rh = [np.bincount(bins[rand == s], minlength=21) / (rand == s).sum() for s in range(3)]
    assert np.abs(rh[0] - rh[2]).max() > np.abs(hists[0] - hists[2]).max()


def test_split_reproducible_and_seed_dependent():
    ages, ids = _data(2000)
    a = split.stratified_group_split(ages, ids, (0.6, 0.2, 0.2), seed=5)
    b = split.stratified_group_split(ages, ids, (0.6, 0.2, 0.2), seed=5)
    c = split.stratified_group_split(ages, ids, (0.6, 0.2, 0.2), seed=6)
    assert (a == b).all() and (a != c).any()


@pytest.mark.parametrize("text", ["0.6,0.4", "0.5,0.5,0.5", "a,b,c", "0.8,0.2,0"])
def test_parse_fractions_rejects(text):
    with pytest.raises(ValueError, match="--split"):
        split.parse_fractions(text)


def test_parse_fractions_ok():
    assert split.parse_fractions("0.6,0.2,0.2") == (0.6, 0.2, 0.2)
