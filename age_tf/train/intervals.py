"""Calibrated age intervals: split conformal prediction, with a width that follows the face.

Two methods. `normalized` (the default): a scale s(x) is learned on the *training* split (a
ridge regression of log(1 + |label - prediction|) on the backbone's pooled features and the
prediction), and the validation split calibrates one factor q, the ceil((n + 1) c)-th
smallest |label - prediction| / s(x): the interval is prediction ± q s(x). Any fixed s keeps
the guarantee (exchangeability of the validation and new faces); a good one makes hard faces
(and the ages a model pulls toward the mean) wide and easy ones narrow. On the demo it holds
0.86+ against the rendered ages in every decade with 10+ test faces, narrower on average than
`binned` (docs/measurement_history.md). `binned`, described next, is what runs before it used.

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

from age_tf import ridge

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


def _validation(true_years, pred_years, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """The validation labels and predictions as float64, after checking what both
    calibrations need (a coverage in (0, 1), at least one prediction)."""
    if not 0 < coverage < 1:
        raise ValueError(f"--interval_coverage must be in (0, 1), got {coverage}")
    t = np.asarray(true_years, np.float64)
    p = np.asarray(pred_years, np.float64)
    if len(t) == 0:
        raise ValueError("no validation predictions to calibrate the intervals on")
    return t, p


def calibrate(true_years, pred_years, coverage: float = DEFAULT_COVERAGE,
              edges=DEFAULT_EDGES, min_per_bin: int = MIN_PER_BIN) -> dict:
    """Half-widths per predicted-age bin from held-out (validation) predictions.

    Returns:
      {"coverage", "edges" (years; bins are (-inf, e0), [e0, e1), ..., [e_last, inf)),
       "half_widths" (years, one per bin), "counts" (validation faces per bin), "method"}.

    Raises:
      ValueError: a coverage outside (0, 1), or no predictions to calibrate on.
    """
    t, p = _validation(true_years, pred_years, coverage)
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
           "method": BINNED,
           "description": "split conformal on validation residuals, one width per "
                          "predicted-age bin"}
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


def interval(pred_years, calibration: dict, features=None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each prediction, as the export serves them: within the training ages
    (`age_range`; without one, low is clipped at 0 years). A `normalized` calibration needs
    each face's pooled backbone features."""
    low_end, high_end = calibration.get("age_range") or (0.0, np.inf)
    p = np.clip(np.asarray(pred_years, np.float64), low_end, high_end)
    if calibration.get("method") == NORMALIZED:
        if features is None:
            raise ValueError("normalized intervals need the faces' backbone features")
        half = calibration["quantile"] * scale(features, p, calibration)
    else:
        half = np.asarray(calibration["half_widths"], np.float64)[_bin_of(p, calibration["edges"])]
    return np.maximum(p - half, low_end), np.minimum(p + half, high_end)


NORMALIZED, BINNED = "normalized", "binned"
METHODS = (NORMALIZED, BINNED)
SCALE_ALPHA = 1000.0  # the scale's ridge penalty (standardized features; 100-1000 measured alike)
MIN_SCALE = 1.0  # years: no face's interval is narrower than the quantile itself


def scale_inputs(features, pred_years) -> np.ndarray:
    """What the scale sees: the pooled features, and the prediction (its square too: the
    error grows toward both ends of life)."""
    p = np.asarray(pred_years, np.float64).reshape(-1, 1) / 50.0
    return np.concatenate([np.asarray(features, np.float64), p, p * p], axis=1)


def fit_scale(features, true_years, pred_years, alpha: float = SCALE_ALPHA) -> dict:
    """A ridge of log(1 + |error|) on scale_inputs, fitted on training faces; the
    standardization folded into the weights: {"weights", "bias"} (log1p years)."""
    x = scale_inputs(features, pred_years)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    target = np.log1p(np.abs(np.asarray(true_years, np.float64) - np.asarray(pred_years, np.float64)))
    w = ridge.solve(*ridge.statistics((x - mu) / sd, target), alpha)
    weights = w[:-1] / sd  # the intercept is last
    bias = w[-1] - float(np.dot(weights, mu))
    return {"weights": [float(v) for v in weights], "bias": float(bias)}


def scale(features, pred_years, calibration: dict) -> np.ndarray:
    """Each face's learned scale (years), at least MIN_SCALE."""
    x = scale_inputs(features, pred_years)
    z = x @ np.asarray(calibration["scale_weights"], np.float64) + calibration["scale_bias"]
    return np.maximum(np.expm1(z), MIN_SCALE)


def calibrate_normalized(true_years, pred_years, features, scale_fit: dict,
                         coverage: float = DEFAULT_COVERAGE) -> dict:
    """The factor q of prediction ± q s(x), from validation faces (never the test split).

    Raises:
      ValueError: a coverage outside (0, 1), or no predictions to calibrate on.
    """
    t, p = _validation(true_years, pred_years, coverage)
    out = {"method": NORMALIZED, "coverage": coverage, "scale_weights": scale_fit["weights"],
           "scale_bias": scale_fit["bias"], "scale_min": MIN_SCALE, "counts": [int(len(t))],
           "description": "split conformal on validation residuals normalized by a scale "
                          "learned on the training split (ridge of log(1 + |error|) on the "
                          "pooled features and the prediction)"}
    out["quantile"] = _conformal_quantile(np.abs(t - p) / scale(features, p, out), coverage)
    held = guarantee(len(t), coverage)
    if held < coverage:
        out["guarantee"] = held
        logging.warning("intervals: %d validation faces cannot give %.0f%% intervals; these "
                        "guarantee %.0f%%, and the card says so", len(t), 100 * coverage,
                        100 * held)
    return out
