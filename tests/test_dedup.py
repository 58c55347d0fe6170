"""Tests for age_tf.data.dedup: candidate search, verification, grouping."""

import numpy as np
import pytest

from age_tf.data import dedup


def _planted(rng, n=300):
    """Hashes and thumbnails of n images and n altered copies (flipped bits, added noise),
    with faces' low-rank structure so that the principal axes mean something."""
    base_h = rng.integers(0, 2**63, n, dtype=np.uint64)
    near_h = base_h.copy()
    for i in range(n):
        for b in rng.integers(0, 64, rng.integers(0, 11)):
            near_h[i] ^= np.uint64(1) << np.uint64(b)
    base_t = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 256)) + 0.5 * rng.normal(size=(n, 256))
    near_t = base_t + rng.uniform(0.05, 3.0, (n, 1)) * rng.normal(size=(n, 256))
    thumbs = np.concatenate([base_t, near_t])
    thumbs = np.clip(128 + 12 * thumbs, 0, 255).astype(np.uint8)
    return np.concatenate([base_h, near_h]), dedup.standardize_thumbnails(thumbs)


@pytest.mark.parametrize("max_distance,min_correlation", [(0, 0.9), (3, 0.95), (8, 0.99),
                                                          (7, 0.97), (12, 0.6)])
def test_near_pairs_match_brute_force(max_distance, min_correlation):
    hashes, x = _planted(np.random.default_rng(0))
    got = dedup.near_duplicate_pairs(hashes, x, max_distance, min_correlation)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    corr = x @ x.T
    ii, jj = np.nonzero(np.triu((dist <= max_distance) & (corr >= min_correlation), k=1))
    assert {tuple(p) for p in got.tolist()} == set(zip(ii.tolist(), jj.tolist()))
    assert len(got) > 0 and (got[:, 0] < got[:, 1]).all()
    # Both tests decide: some pairs pass one and fail the other.
    upper = np.triu(np.ones_like(corr, dtype=bool), k=1)
    assert ((dist <= max_distance) & (corr < min_correlation) & upper).any()
    assert ((dist > max_distance) & (corr >= min_correlation) & upper).any()


def test_near_pairs_keep_pairs_at_the_correlation_edge():
    """Pairs just above the threshold are found despite float32 round-off in the search."""
    hashes, x = _planted(np.random.default_rng(1))
    corr = (x @ x.T)[np.triu_indices(len(x), 1)]
    edge = float(np.sort(corr)[-40]) - 1e-6  # a pair 1e-6 above the threshold
    got = dedup.near_duplicate_pairs(hashes, x, 15, edge)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    want = np.triu((dist <= 15) & (x @ x.T >= edge), k=1).sum()
    assert len(got) == want >= 1


@pytest.mark.parametrize("k", [0, 1, 25, 10_000])
def test_most_similar_pairs_are_the_brute_force_top_k_and_all_are_counted(k, monkeypatch):
    monkeypatch.setattr(dedup, "VERIFY_CHUNK", 97)  # many chunks: the running top-k merges
    hashes, x = _planted(np.random.default_rng(3))
    labels = np.arange(len(hashes)) % 3
    got = dedup.most_similar_pairs(hashes, x, 10, 0.9, k, labels=labels)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    corr = x @ x.T
    ii, jj = np.nonzero(np.triu((dist <= 10) & (corr >= 0.9), k=1))
    assert got.total == len(ii) > 25
    assert got.total_across == int((labels[ii] != labels[jj]).sum())
    best = np.sort(corr[ii, jj])[::-1][:k]
    assert len(got.pairs) == len(got.correlation) == min(k, len(ii))
    np.testing.assert_allclose(got.correlation, best, rtol=1e-6)
    np.testing.assert_allclose(corr[got.pairs[:, 0], got.pairs[:, 1]], got.correlation, rtol=1e-6)
    assert (got.pairs[:, 0] < got.pairs[:, 1]).all()


def test_near_pairs_refuse_bad_thresholds():
    hashes, x = _planted(np.random.default_rng(2), n=10)
    with pytest.raises(ValueError, match="max_distance"):
        dedup.near_duplicate_pairs(hashes, x, 16, 0.9)
    with pytest.raises(ValueError, match="min_correlation"):
        dedup.near_duplicate_pairs(hashes, x, 8, 0.0)
    assert dedup.near_duplicate_pairs(hashes[:1], x[:1], 8, 0.9).shape == (0, 2)


def test_components_match_a_union_find_and_label_by_smallest_member():
    rng = np.random.default_rng(1)
    n = 2000
    pairs = rng.integers(0, n, (1500, 2))
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    # Reference: smallest member of each union-find set.
    smallest = {r: np.flatnonzero(roots == r).min() for r in set(roots.tolist())}
    want = np.array([smallest[r] for r in roots])
    np.testing.assert_array_equal(dedup.components(n, pairs), want)
    np.testing.assert_array_equal(dedup.components(3, np.zeros((0, 2))), [0, 1, 2])


def test_exact_pairs_join_each_copy_to_the_first():
    got = dedup.exact_pairs(["x", "y", "x", "z", "x", "y"]).tolist()
    assert sorted(got) == [[0, 2], [0, 4], [1, 5]]


def test_group_duplicates_exact_near_and_distinct():
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 255, (5, 256)).astype(np.uint8)
    thumbs[3] = np.clip(thumbs[2].astype(int) + rng.integers(-2, 3, 256), 0, 255)  # near copy
    thumbs[4] = 255 - thumbs[0]  # same layout hash below, but anti-correlated: not a duplicate
    sha = ["a", "a", "b", "c", "d"]
    h = np.array([1, 1, 7, 7 ^ 3, 1], dtype=np.uint64)
    group, stats = dedup.group_duplicates(sha, h, thumbs)
    assert group.tolist() == [0, 0, 2, 2, 4]
    assert stats["exact_duplicate_pairs"] == 1 and stats["near_duplicate_pairs"] == 1


def test_choose_kept_prefers_largest_then_first():
    group = np.array([0, 0, 0, 3, 4, 4])
    area = np.array([10, 20, 20, 5, 7, 7])
    assert dedup.choose_kept(group, area).tolist() == [False, True, False, True, True, False]
