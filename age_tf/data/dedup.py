"""Groups exact and near-duplicate images (same bytes, or same picture re-encoded/resized)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.sparse.csgraph import connected_components

# Measured on 5,000 synthetic crops (tools/measure_prepare.py): re-encoded and resized copies
# differ from their original by up to 9 dHash bits and correlate at >= 0.993; distinct faces
# within 10 bits correlate at <= 0.981.
DEFAULT_MAX_DISTANCE = 8
DEFAULT_MIN_CORRELATION = 0.99


# Most distance entries compared at once (rows x bucket members): bounds the memory of one
# block to ~9 bytes an entry (XOR in uint64 + popcount in uint8), ~150 MB, whatever the
# bucket size. Face dHashes are skewed, so a chunk bucket can hold a large share of all
# images (measured: one bucket of 22% of 50k crops).
BLOCK_ENTRIES = 16_000_000
# Candidate pairs verified at once: two gathered float32 thumbnail rows each (2 KB), so
# ~130 MB whatever the number of candidates.
VERIFY_CHUNK = 65_536


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of n nodes joined by pairs; each labelled by its smallest node.

    scipy's connected_components: linear in n + pairs, with no Python loop per pair.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = scipy.sparse.coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
                                    shape=(n, n))
    _, label = connected_components(graph, directed=False)
    smallest = np.full(label.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(smallest, label, np.arange(n))
    return smallest[label]


def exact_pairs(digests) -> np.ndarray:
    """(P, 2) pairs joining every image to the first image with the same digest."""
    codes, _ = pd.factorize(pd.Series(digests), sort=False)
    idx = np.arange(len(codes))
    first = pd.Series(idx).groupby(codes).transform("min").to_numpy()
    dup = np.flatnonzero(first != idx)
    return np.stack([first[dup], dup], axis=1).astype(np.int64)


def _chunk_masks(max_distance: int) -> list[tuple[int, int]]:
    """Splits 64 bits into max_distance + 1 chunks (shift, mask).

    Pigeonhole: two hashes within Hamming distance d differ in at most d chunks, so with
    d + 1 chunks they agree exactly on at least one. Bucketing on each chunk finds every
    candidate pair without comparing all n^2 pairs. (Keys of two chunks out of d + 2 were
    measured slower: 138 s against 97 s for prepare at 150k images, from 5x the passes.)
    """
    k = max_distance + 1
    sizes = [64 // k + (1 if i < 64 % k else 0) for i in range(k)]
    out, shift = [], 0
    for size in sizes:
        out.append((shift, (1 << size) - 1))
        shift += size
    return out


def near_duplicate_pairs(
    hashes: np.ndarray, max_distance: int, verify=None, block_entries: int = BLOCK_ENTRIES
) -> np.ndarray:
    """All pairs (i < j) whose 64-bit hashes differ in at most max_distance bits.

    Args:
      hashes: uint64 array of perceptual hashes.
      max_distance: Hamming threshold (0..15).
      verify: optional function (a, b) -> bool mask over candidate index arrays; applied
        block by block so that memory stays bounded when candidates are many (the hash of
        face crops is far from uniform).
      block_entries: most hash comparisons held at once; a crowded bucket is compared in
        blocks of rows against the members after them (each pair once), so memory stays
        bounded whatever the bucket size.

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
            m = len(members)
            block = max(1, min(m, block_entries // m))
            for r0 in range(0, m - 1, block):
                rows = h[r0 : r0 + block]
                # Only the members from r0 on: pairs with earlier rows were seen already.
                dist = np.bitwise_count(rows[:, None] ^ h[None, r0:])
                ii, jj = np.nonzero(dist <= max_distance)
                keep = ii < jj
                if keep.any():
                    a, b = members[ii[keep] + r0], members[jj[keep] + r0]
                    if verify is not None:
                        # In chunks: a verifier gathers a row per pair (thumbnails: 1 KB),
                        # and a crowded block can hold millions of candidate pairs.
                        ok = np.concatenate([verify(a[c : c + VERIFY_CHUNK], b[c : c + VERIFY_CHUNK])
                                             for c in range(0, len(a), VERIFY_CHUNK)])
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
    exact = exact_pairs(sha256)
    near = np.zeros((0, 2), dtype=np.int64)
    if max_distance > 0 and n > 1:
        x = standardize_thumbnails(thumbs)

        def verify(a, b):
            return np.einsum("ij,ij->i", x[a], x[b]) >= min_correlation

        near = near_duplicate_pairs(dhash, max_distance, verify)
    digests = np.asarray(sha256)
    group = components(n, np.concatenate([exact, near]))
    stats = {
        "exact_duplicate_pairs": len(exact),
        "near_duplicate_pairs": int((digests[near[:, 0]] != digests[near[:, 1]]).sum()),
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
