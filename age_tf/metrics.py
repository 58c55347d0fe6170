"""Agreement between predicted and true ages: PLCC, SROCC, MAE, RMSE, CS@k, bootstrap CIs."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def plcc(y_true, y_pred) -> float:
    """Pearson linear correlation; NaN when either side is constant."""
    a = np.asarray(y_true, np.float64) - np.mean(y_true)
    b = np.asarray(y_pred, np.float64) - np.mean(y_pred)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def srocc(y_true, y_pred) -> float:
    """Spearman rank correlation: Pearson of ranks, ties given their average rank (as scipy)."""
    return plcc(rankdata(y_true), rankdata(y_pred))


def mae(y_true, y_pred) -> float:
    """Mean absolute error (in the units of its inputs)."""
    return float(np.mean(np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64))))


def regression_metrics(true_years, pred_years) -> dict:
    """MAE, RMSE, PLCC, SROCC and CS@5 in years (CS@5: share within 5 years)."""
    t = np.asarray(true_years, np.float64)
    p = np.asarray(pred_years, np.float64)
    err = np.abs(p - t)
    return {
        "mae_years": float(err.mean()),
        "rmse_years": float(np.sqrt(((p - t) ** 2).mean())),
        "plcc": plcc(t, p),
        "srocc": srocc(t, p),
        "cs5": float((err <= 5).mean()),
    }


def bootstrap_ci(true_years, pred_years, fn, n: int = 1000, seed: int = 0, level: float = 0.95,
                 groups=None):
    """Percentile bootstrap interval of fn(true, pred).

    Args:
      groups: one label per image (e.g. the person). Given, whole groups are resampled (a
        cluster bootstrap): photos of one person are not independent draws, and resampling
        them one by one gives intervals that are too narrow. None: images are resampled.
    """
    t = np.asarray(true_years, np.float64)
    p = np.asarray(pred_years, np.float64)
    rng = np.random.default_rng(seed)
    # Each group's members are one run of `order`; a resample is its picked runs, end to end.
    if groups is None:
        order, starts, sizes = np.arange(len(t)), np.arange(len(t)), np.ones(len(t), np.int64)
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        sizes = np.bincount(inverse)
        starts = np.cumsum(sizes) - sizes
    stats = []
    for _ in range(n):
        pick = rng.integers(0, len(sizes), len(sizes))
        lengths = sizes[pick]
        at = np.cumsum(lengths) - lengths  # where each picked run starts in the resample
        idx = order[np.repeat(starts[pick] - at, lengths) + np.arange(lengths.sum())]
        stats.append(fn(t[idx], p[idx]))
    stats = np.asarray(stats, np.float64)
    if np.isnan(stats).all():  # undefined on every resample (e.g. a constant prediction)
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


DECADES = tuple(range(0, 100, 10))  # true-age decades for the reports (90: 90-100)


def decade_of(years) -> np.ndarray:
    """0, 10, ..., 90 (90 holds 90-100)."""
    return np.clip(np.asarray(years, np.float64) // 10, 0, 9).astype(int) * 10


def coverage_report(true_years, low, high) -> dict:
    """Share of true ages inside [low, high], overall and per decade of true age; mean width.

    Returns:
      {"coverage", "mean_width", "images", "by_decade": {"0-9": {"images", "coverage"}, ...}}.
    """
    t = np.asarray(true_years, np.float64)
    inside = (t >= np.asarray(low)) & (t <= np.asarray(high))
    decades = decade_of(t)
    by = {}
    for d in DECADES:
        mine = decades == d
        if mine.any():
            by[decade_label(d)] = {"images": int(mine.sum()), "coverage": float(inside[mine].mean())}
    return {"coverage": float(inside.mean()) if len(t) else float("nan"),
            "mean_width": float(np.mean(np.asarray(high) - np.asarray(low))) if len(t) else float("nan"),
            "images": int(len(t)), "by_decade": by}


def decade_label(d: int) -> str:
    return "90-100" if d == 90 else f"{d}-{d + 9}"


def error_by_decade(true_years, pred_years) -> dict:
    """MAE and mean signed error (prediction - truth: the bias) per decade of true age."""
    t = np.asarray(true_years, np.float64)
    e = np.asarray(pred_years, np.float64) - t
    decades = decade_of(t)
    out = {}
    for d in DECADES:
        mine = decades == d
        if mine.any():
            out[decade_label(d)] = {"images": int(mine.sum()), "mae_years": float(np.abs(e[mine]).mean()),
                                    "bias_years": float(e[mine].mean())}
    return out


def error_by_group(true_years, pred_years, labels, low=None, high=None, identities=None,
                   bootstrap: int = 1000, seed: int = 0, min_images: int = 10) -> dict:
    """MAE, bias, CS@5 (and interval coverage) per group, and the largest MAE gap between
    groups of at least `min_images` faces, with its bootstrap interval over `identities`
    (people) when given: a gap measured on few people is mostly noise.

    Returns:
      {"groups": {label: {"images", "mae_years", "bias_years", "cs5"[, "coverage"]}},
       "gap": {"between": [worse, better], "mae_years", "ci95"} (absent with < 2 groups)}.
    """
    t = np.asarray(true_years, np.float64)
    e = np.asarray(pred_years, np.float64) - t
    labels = np.asarray(labels, dtype=object)
    inside = None if low is None else (t >= np.asarray(low)) & (t <= np.asarray(high))
    groups = {}
    for g in sorted(set(labels.tolist()), key=str):
        mine = labels == g
        row = {"images": int(mine.sum()), "mae_years": float(np.abs(e[mine]).mean()),
               "bias_years": float(e[mine].mean()), "cs5": float((np.abs(e[mine]) <= 5).mean())}
        if inside is not None:
            row["coverage"] = float(inside[mine].mean())
        groups[str(g)] = row
    out = {"groups": groups}
    big = [g for g, r in groups.items() if r["images"] >= min_images]
    if len(big) < 2:
        return out
    worse = max(big, key=lambda g: groups[g]["mae_years"])
    better = min(big, key=lambda g: groups[g]["mae_years"])
    out["gap"] = {"between": [worse, better],
                  "mae_years": groups[worse]["mae_years"] - groups[better]["mae_years"]}
    if bootstrap:
        code = np.where(labels == worse, 1.0, np.where(labels == better, 2.0, 0.0))

        def gap(tc, p):  # resampled (true, code) pairs -> the two groups' MAE difference
            err = np.abs(p - tc[:, 0])
            a, b = tc[:, 1] == 1.0, tc[:, 1] == 2.0
            return float(err[a].mean() - err[b].mean()) if a.any() and b.any() else float("nan")

        out["gap"]["ci95"] = list(bootstrap_ci(np.column_stack([t, code]), t + e, gap,
                                               bootstrap, seed, groups=identities))
    return out


def risk_coverage(true_years, pred_years, width, steps: int = 20) -> dict:
    """Selective prediction: answer only the faces with the narrowest intervals. For each
    share answered (1/steps, ..., 1), the MAE of the faces answered.

    Ties in width (the conformal widths are one per bin) are broken by the face's order, so
    a share inside a tie answers some of the tied faces.
    """
    t = np.asarray(true_years, np.float64)
    p = np.asarray(pred_years, np.float64)
    order = np.argsort(np.asarray(width, np.float64), kind="stable")
    err = np.abs(t - p)[order]
    answered = np.arange(1, steps + 1) / steps
    counts = np.maximum(1, np.round(answered * len(t)).astype(int))
    running = np.cumsum(err)
    return {"answered": answered.round(4).tolist(),
            "mae_years": [float(running[n - 1] / n) for n in counts]}
