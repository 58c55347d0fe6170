"""Groups exact and near-duplicate images (same bytes, or same picture re-encoded/resized)."""

from __future__ import annotations

import numpy as np

# Measured on 5,000 synthetic crops (tools/measure_prepare.py): re-encoded and resized copies
# differ from their original by up to 9 dHash bits and correlate at >= 0.993; distinct faces
# within 10 bits correlate at <= 0.981.
DEFAULT_MAX_DISTANCE = 8
DEFAULT_MIN_CORRELATION = 0.99


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # Path compression keeps later finds O(1).
            parent[i], i = root, parent[i]
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _chunk_masks(max_distance: int) -> list[tuple[int, int]]:
    """Splits 64 bits into max_distance + 1 chunks (shift, mask).

    Pigeonhole: two hashes within Hamming distance d differ in at most d chunks, so with
    d + 1 chunks they agree exactly on at least one. Bucketing on each chunk finds every
    candidate pair without comparing all n^2 pairs.
    """
    k = max_distance + 1
    sizes = [64 // k + (1 if i < 64 % k else 0) for i in range(k)]
    out, shift = [], 0
    for size in sizes:
        out.append((shift, (1 << size) - 1))
        shift += size
    return out


def near_duplicate_pairs(
    hashes: np.ndarray, max_distance: int, verify=None, block: int = 2048
) -> np.ndarray:
    """All pairs (i < j) whose 64-bit hashes differ in at most max_distance bits.

    Args:
      hashes: uint64 array of perceptual hashes.
      max_distance: Hamming threshold (0..15).
      verify: optional function (a, b) -> bool mask over candidate index arrays; applied
        block by block so that memory stays bounded when candidates are many (the hash of
        face crops is far from uniform).
      block: rows compared at once inside a bucket; bounds memory for crowded buckets.

    Returns:
      int64 array of shape (P, 2), unique pairs.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if not 0 <= max_distance <= 15:
        raise ValueError(f"max_distance must be in [0, 15], got {max_distance}")
    found = []
    for shift, mask in _chunk_masks(max_distance):
        keys = (hashes >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = order[s:e]
            h = hashes[members]
            for r0 in range(0, len(members), block):
                rows = h[r0 : r0 + block]
                dist = np.bitwise_count(rows[:, None] ^ h[None, :])
                ii, jj = np.nonzero(dist <= max_distance)
                ii = ii + r0
                keep = ii < jj
                if keep.any():
                    a, b = members[ii[keep]], members[jj[keep]]
                    if verify is not None:
                        ok = verify(a, b)
                        a, b = a[ok], b[ok]
                    found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def standardize_thumbnails(thumbs: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm rows, so a dot product is a Pearson correlation."""
    x = thumbs.astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    # A flat thumbnail (norm 0) correlates with nothing, so it never joins a group by this test.
    return x / np.maximum(norm, 1e-6)


def group_duplicates(
    sha256: list[str],
    dhash: np.ndarray,
    thumbs: np.ndarray,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
) -> tuple[np.ndarray, dict]:
    """Groups images that are the same picture.

    Exact duplicates share file bytes. Near duplicates (re-encoded, resized, recompressed
    copies) have dHashes within `max_distance` bits *and* grayscale thumbnails correlating at
    `min_correlation` or more: the hash finds candidates fast, the thumbnail check rejects
    different photos that merely share a coarse layout (common among face crops).

    Args:
      sha256: hex digest per image.
      dhash: uint64 dHash per image.
      thumbs: (N, THUMB_SIZE**2) uint8 thumbnails.
      max_distance: dHash Hamming threshold; 0 disables near-duplicate search.
      min_correlation: thumbnail correlation threshold for a near duplicate.

    Returns:
      (group, stats): group[i] is the smallest index in image i's group; stats counts pairs.
    """
    n = len(sha256)
    uf = _UnionFind(n)
    first_by_digest: dict[str, int] = {}
    exact_pairs = 0
    for i, d in enumerate(sha256):
        j = first_by_digest.setdefault(d, i)
        if j != i:
            uf.union(i, j)
            exact_pairs += 1
    near_pairs = 0
    if max_distance > 0 and n > 1:
        x = standardize_thumbnails(thumbs)

        def verify(a, b):
            return np.einsum("ij,ij->i", x[a], x[b]) >= min_correlation

        for a, b in near_duplicate_pairs(dhash, max_distance, verify):
            if sha256[a] != sha256[b]:
                near_pairs += 1
            uf.union(int(a), int(b))
    group = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    stats = {
        "exact_duplicate_pairs": exact_pairs,
        "near_duplicate_pairs": near_pairs,
    }
    return group, stats


def choose_kept(group: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Boolean mask keeping one image per group: the largest, then the first in file order."""
    n = len(group)
    order = np.lexsort((np.arange(n), -np.asarray(area, dtype=np.int64), group))
    keep = np.zeros(n, dtype=bool)
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    keep[order[first]] = True
    return keep
