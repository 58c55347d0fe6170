"""Tests for age_tf.data.dedup: candidate search, verification, grouping."""

import numpy as np
import pytest

from age_tf.data import dedup


@pytest.mark.parametrize("max_distance", [0, 3, 8])
def test_near_pairs_match_brute_force(max_distance):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    # Plant near copies: flip a few random bits.
    flips = rng.integers(0, 64, (300, 10))
    near = base.copy()
    for i in range(300):
        for b in flips[i, : rng.integers(0, 11)]:
            near[i] ^= np.uint64(1) << np.uint64(b)
    hashes = np.concatenate([base, near])
    got = {tuple(p) for p in dedup.near_duplicate_pairs(hashes, max_distance)}
    # Crowded buckets compared in bounded blocks (here 1-2 rows at a time) find the same pairs.
    tiny = {tuple(p) for p in dedup.near_duplicate_pairs(hashes, max_distance, block_entries=500)}
    assert tiny == got
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    ii, jj = np.nonzero(np.triu(dist <= max_distance, k=1))
    assert got == set(zip(ii.tolist(), jj.tolist()))
    assert len(got) > 0


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
