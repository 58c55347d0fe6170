"""Groups exact and near-duplicate images (same bytes, or same picture re-encoded/resized)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.spatial
from scipy.sparse.csgraph import connected_components

# Measured on 5,000 synthetic crops (tools/measure_prepare.py): re-encoded and resized copies
# differ from their original by up to 9 dHash bits and correlate at >= 0.993; distinct faces
# within 10 bits correlate at <= 0.981.
DEFAULT_MAX_DISTANCE = 8
DEFAULT_MIN_CORRELATION = 0.99


# Candidate pairs come from a k-d tree over the thumbnails' leading principal axes: an
# orthonormal projection never lengthens a distance, so every pair close in the full space
# is close in the projection (no pair is missed) and only false candidates remain to be
# rejected. 12 axes: measured on 119k synthetic crops (tools/bench_scale.py), 8 axes leave
# 4x more false candidates at the audit's 0.97, 16 axes make the tree slower.
PROJECTION_AXES = 12
# Candidate pairs checked at once: two gathered float32 thumbnail rows each (2 KB), so
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


def _check_thresholds(max_distance: int, min_correlation: float) -> None:
    if not 0 <= max_distance <= 15:
        raise ValueError(f"max_distance must be in [0, 15], got {max_distance}")
    if not 0 < min_correlation <= 1:
        raise ValueError(f"min_correlation must be in (0, 1], got {min_correlation}")


def _verified_chunks(hashes: np.ndarray, x: np.ndarray, max_distance: int,
                     min_correlation: float):
    """Yields ((P, 2) pairs i < j, (P,) correlations) chunk by chunk: every pair with dHashes
    within max_distance bits and thumbnails correlating at min_correlation or more, each once.

    Both tests must pass, so candidates can come from either. They come from the thumbnails:
    correlation c between unit rows is distance sqrt(2 - 2c), a fixed-radius search that a
    k-d tree on a few principal axes answers in about n log n plus the candidates it
    returns. (Bucketing dHashes by chunks, the earlier method, compared crowded buckets
    exhaustively: face dHashes are skewed, one bucket held 22% of 50k crops, and its time
    grew as n^2.)
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    _check_thresholds(max_distance, min_correlation)
    n = len(hashes)
    if n < 2:
        return
    # Principal axes from at most ~20k rows: any orthonormal axes keep the search exact;
    # good ones only make it selective.
    sample = x[:: max(1, n // 20_000)]
    _, axes = np.linalg.eigh(np.cov(sample, rowvar=False))
    y = x @ axes[:, ::-1][:, :PROJECTION_AXES].astype(np.float32)
    # A small margin over sqrt(2 - 2c) so float32 round-off cannot drop a pair at the edge.
    radius = np.sqrt(2.0 - 2.0 * min_correlation) * 1.001 + 1e-4
    candidates = scipy.spatial.cKDTree(y).query_pairs(radius, output_type="ndarray")
    for c in range(0, len(candidates), VERIFY_CHUNK):
        a, b = candidates[c : c + VERIFY_CHUNK].T
        near = np.bitwise_count(hashes[a] ^ hashes[b]) <= max_distance  # cheap test first
        a, b = a[near], b[near]
        corr = np.einsum("ij,ij->i", x[a], x[b])
        alike = corr >= min_correlation
        pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)[alike].astype(np.int64)
        yield pairs, corr[alike]


def near_duplicate_pairs(hashes: np.ndarray, x: np.ndarray, max_distance: int,
                         min_correlation: float) -> np.ndarray:
    """All pairs (i < j) with dHashes within max_distance bits and thumbnails correlating at
    min_correlation or more (prepare's dedup, which must join every pair).

    Args:
      hashes: uint64 dHash per image.
      x: (N, D) float32 thumbnails from standardize_thumbnails (zero-mean, unit rows).
      max_distance: Hamming threshold (0..15).
      min_correlation: thumbnail correlation threshold, in (0, 1].

    Returns:
      int64 array of shape (P, 2), unique pairs sorted by (i, j).
    """
    found = [pairs for pairs, _ in _verified_chunks(hashes, x, max_distance, min_correlation)]
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


@dataclasses.dataclass
class RankedPairs:
    """The most similar near-duplicate pairs and how many were found in all."""

    pairs: np.ndarray  # (K, 2) int64, i < j, most correlated first
    correlation: np.ndarray  # (K,) float32
    total: int  # pairs found, listed or not
    total_across: int  # of those, pairs whose two images carry different labels


def most_similar_pairs(hashes: np.ndarray, x: np.ndarray, max_distance: int,
                       min_correlation: float, k: int,
                       labels: np.ndarray | None = None) -> RankedPairs:
    """The k most correlated pairs passing near_duplicate_pairs' two tests, and the count of
    all of them (the audit's list, for a person to look at).

    The pairs above a fixed similarity grow as n^2 among look-alike faces, so the search is
    complete but only k are kept: memory is bounded by k and one verified chunk, whatever n.

    Args:
      labels: optional per-image labels (e.g. split codes); pairs across labels are counted.
    """
    keep_p = np.zeros((0, 2), np.int64)
    keep_c = np.zeros(0, np.float32)
    total = across = 0
    for pairs, corr in _verified_chunks(hashes, x, max_distance, min_correlation):
        total += len(pairs)
        if labels is not None:
            across += int((labels[pairs[:, 0]] != labels[pairs[:, 1]]).sum())
        keep_p = np.concatenate([keep_p, pairs])
        keep_c = np.concatenate([keep_c, corr.astype(np.float32)])
        if len(keep_c) > k:
            top = np.argpartition(-keep_c, k - 1)[:k] if k else np.zeros(0, np.int64)
            keep_p, keep_c = keep_p[top], keep_c[top]
    # Most correlated first; ties by (i, j), so the list is the same on every run.
    order = np.lexsort((keep_p[:, 1], keep_p[:, 0], -keep_c))
    return RankedPairs(keep_p[order], keep_c[order], total, across)


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
        near = near_duplicate_pairs(dhash, standardize_thumbnails(thumbs), max_distance,
                                    min_correlation)
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
