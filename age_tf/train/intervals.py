"""Calibrated age intervals: split conformal prediction, one width per predicted-age bin.

The widths come from held-out residuals (the validation split, never the test split): in
each bin of *predicted* age, the half-width is the ceil((n + 1) c)-th smallest |label -
prediction| of that bin's n validation faces, so that a new face whose prediction falls in
the bin is covered with probability >= c (exchangeability within the bin). Binning by the
prediction (known at serving time) keeps children from getting the width of the elderly.
A bin with too few validation faces is merged with its neighbour, so no width rests on a
handful of residuals.
"""

from __future__ import annotations

import math

import numpy as np
from absl import logging

DEFAULT_COVERAGE = 0.9
# Predicted-age bin edges (years): children, each decade of adult life, then 70+.
DEFAULT_EDGES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0)
MIN_PER_BIN = 30


def guarantee(n: int, coverage: float) -> float:
    """What an interval from n held-out residuals guarantees: the coverage asked for when
    ceil((n + 1) c) <= n, else only n / (n + 1) (the largest residual is all there is)."""
    return coverage if math.ceil((n + 1) * coverage) <= n else min(coverage, n / (n + 1))


def faces_needed(coverage: float) -> int:
    """The fewest held-out faces that give `coverage` (9 for 90%)."""
    return math.ceil(coverage / (1 - coverage) - 1e-9)  # n / (n + 1) >= coverage


def _conformal_quantile(abs_residuals: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) c)-th smallest |residual| (the largest one if that exceeds n)."""
    r = np.sort(np.asarray(abs_residuals, np.float64))
    k = math.ceil((len(r) + 1) * coverage)
    return float(r[min(k, len(r)) - 1])


def _bin_of(pred: np.ndarray, edges) -> np.ndarray:
    """Bin index of each prediction: 0 below edges[0], i for edges[i-1] <= p < edges[i]."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(pred, np.float64),
                           side="right")


def _merge_small_bins(edges: list[float], counts: list[int], min_count: int) -> list[float]:
    """Removes edges until every bin holds at least min_count (or one bin is left)."""
    edges, counts = list(edges), list(counts)
    while len(counts) > 1 and min(counts) < min_count:
        i = int(np.argmin(counts))
        # Merge with the smaller neighbour: the edge between them goes.
        j = i - 1 if i == len(counts) - 1 or (i > 0 and counts[i - 1] <= counts[i + 1]) else i + 1
        lo = min(i, j)
        counts[lo] += counts.pop(lo + 1)
        edges.pop(lo)
    return edges


def calibrate(true_years, pred_years, coverage: float = DEFAULT_COVERAGE,
              edges=DEFAULT_EDGES, min_per_bin: int = MIN_PER_BIN) -> dict:
    """Half-widths per predicted-age bin from held-out (validation) predictions.

    Returns:
      {"coverage", "edges" (years; bins are (-inf, e0), [e0, e1), ..., [e_last, inf)),
       "half_widths" (years, one per bin), "counts" (validation faces per bin), "method"}.

    Raises:
      ValueError: a coverage outside (0, 1), or no predictions to calibrate on.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"--interval_coverage must be in (0, 1), got {coverage}")
    t = np.asarray(true_years, np.float64)
    p = np.asarray(pred_years, np.float64)
    if len(t) == 0:
        raise ValueError("no validation predictions to calibrate the intervals on")
    counts = np.bincount(_bin_of(p, edges), minlength=len(edges) + 1).tolist()
    edges = _merge_small_bins([float(e) for e in edges], counts, min_per_bin)
    bins = _bin_of(p, edges)
    residual = np.abs(t - p)
    widths, counts = [], []
    for b in range(len(edges) + 1):
        mine = residual[bins == b]
        counts.append(int(len(mine)))
        widths.append(_conformal_quantile(mine, coverage) if len(mine) else float("nan"))
    # An empty bin (possible only when every face fell in one bin) takes the overall width.
    overall = _conformal_quantile(residual, coverage)
    widths = [overall if w != w else w for w in widths]
    out = {"coverage": coverage, "edges": edges, "half_widths": widths, "counts": counts,
           "method": "split conformal on validation residuals, one width per predicted-age bin"}
    # Bins merge down to one before any holds fewer than min_per_bin, so only a tiny
    # validation split can fall short: say what its intervals really guarantee.
    held = guarantee(min(counts) if min(counts) else len(t), coverage)
    if held < coverage:
        out["guarantee"] = held
        logging.warning(
            "intervals: %d validation faces cannot give %.0f%% intervals (that needs %d or "
            "more); these guarantee %.0f%%, and the card says so", len(t), 100 * coverage,
            faces_needed(coverage), 100 * held)
    return out


def interval(pred_years, calibration: dict) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each prediction, as the export serves them: within the training ages
    (`age_range`; without one, low is clipped at 0 years)."""
    low_end, high_end = calibration.get("age_range") or (0.0, np.inf)
    p = np.clip(np.asarray(pred_years, np.float64), low_end, high_end)
    half = np.asarray(calibration["half_widths"], np.float64)[_bin_of(p, calibration["edges"])]
    return np.maximum(p - half, low_end), np.minimum(p + half, high_end)
