"""Decisions at an age threshold with a stated error rate: over, under, or uncertain.

What an age estimate is mostly used for is a decision (is this person under 18?). The cuts
are label-conditional split conformal (the same exchangeability argument as the intervals):
among the validation faces whose labelled age is under the threshold T, a new face is
called `over` only when its prediction is above the ceil((n + 1)(1 - e))-th smallest of
their n predictions, so that a face truly under T is called over with probability at most
e; symmetrically, `under` only below the same order statistic, from the top, of the faces
at or over T. A face between the two cuts is `uncertain`: the model cannot decide it at
that error rate. Where the cuts cross (a model good enough to decide every face), the
midpoint between them decides: each call there still keeps its own bound.

Calibration sees only the validation split, which travels in the model card as (label,
prediction) pairs (at most MAX_FACES, a seeded random subset: a random part of the
validation split is still exchangeable with new faces), so any threshold and error rate can
be asked for at prediction time.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from age_tf.config import field

DEFAULT_ERROR = 0.05
DEFAULT_THRESHOLDS = (13.0, 18.0, 25.0)
# NIST's "Challenge-T" policy: a face must look at least this many years over T to pass
# without a check (Challenge-25 for a legal age of 18).
CHALLENGE_MARGIN = 7.0
MAX_FACES = 5000  # validation pairs kept in the card: ~60 KB of JSON
PREDICTION_DIGITS = 2  # predictions are stored, and compared, to 0.01 years
OVER, UNDER, UNCERTAIN = "over", "under", "uncertain"
METHOD = ("label-conditional split conformal on the validation split: among faces under the "
          "threshold at most `error` are called over; among faces at or over it at most "
          "`error` are called under")


def band_field():
    """--decision_band, one definition for every command that decides (predict, evaluate)."""
    return field(None, low=0, low_open=True, help="Calibrate each threshold's cuts on the "
                 "validation faces within this many years of it only (at 18 with 5: the "
                 "over-cut on ages 13-17, the under-cut on 18-22), so that --decision_error is "
                 "promised for the faces next to the threshold, not averaged with the young "
                 "children who are never called over; default: every face.")


def calibration_sample(true_years, pred_years, max_faces: int = MAX_FACES, seed: int = 0
                       ) -> dict:
    """What the card stores to calibrate decisions: validation (label, prediction) pairs.

    Raises:
      ValueError: no pairs, or arrays of different lengths.
    """
    t = np.asarray(true_years, np.float64).reshape(-1)
    p = np.asarray(pred_years, np.float64).reshape(-1)
    if len(t) != len(p) or not len(t):
        raise ValueError(f"decisions: {len(t)} validation labels and {len(p)} predictions; "
                         "need the same number, at least one")
    keep = np.arange(len(t))
    if len(t) > max_faces:
        keep = np.sort(np.random.default_rng(seed).choice(len(t), max_faces, replace=False))
    return {"faces": len(t), "kept": len(keep), "method": METHOD,
            "ages": [round(float(a), 2) for a in t[keep]],
            "predicted": [round(float(v), PREDICTION_DIGITS) for v in p[keep]]}


@dataclasses.dataclass(frozen=True)
class Cut:
    """A threshold's calibrated cuts: `over` when prediction > over_above, `under` when
    prediction < under_below (infinite: never said)."""

    threshold: float
    error: float
    over_above: float
    under_below: float
    n_under: int  # validation faces under the threshold (calibrate over_above)
    n_over: int  # validation faces at or over it (calibrate under_below)
    band: float | None = None  # calibrated on faces within this many years of it only

    def summary(self) -> dict:
        finite = lambda v: round(v, PREDICTION_DIGITS) if math.isfinite(v) else None
        return {"threshold": self.threshold, "error": self.error,
                "over_above": finite(self.over_above), "under_below": finite(self.under_below),
                "validation_under": self.n_under, "validation_over": self.n_over,
                "band": self.band}

    def text(self) -> str:
        """How the cut reads to a user."""
        t = f"{self.threshold:g}"
        over = (f"over {t} when estimated above {self.over_above:.1f}"
                if math.isfinite(self.over_above) else f"never over {t}")
        under = (f"under {t} below {self.under_below:.1f}" if math.isfinite(self.under_below)
                 else f"never under {t}")
        if self.band is None:
            under_t, over_t = f"under {t}", f"{t} or older"
        else:  # the promise holds for the faces next to the threshold
            under_t = f"aged {self.threshold - self.band:g} to {t} (not {t})"
            over_t = f"aged {t} to {self.threshold + self.band:g} (not {self.threshold + self.band:g})"
        return (f"{over}, {under}, else uncertain (at most {self.error:.0%} of faces {under_t} "
                f"called over, and of faces {over_t} called under; calibrated on "
                f"{self.n_under} + {self.n_over} validation faces)")


def _order_stat(values: np.ndarray, error: float) -> float:
    """The ceil((n + 1)(1 - error))-th smallest value; +inf when that exceeds n (too few
    faces to promise `error`: the decision is never made)."""
    k = math.ceil((len(values) + 1) * (1 - error) - 1e-9)
    return float(np.sort(values)[k - 1]) if k <= len(values) else math.inf


def calibrate(sample: dict, threshold: float, error: float = DEFAULT_ERROR,
              band: float | None = None) -> Cut:
    """The cut of one threshold from a calibration_sample.

    Args:
      band: calibrate `over` only on the faces less than `band` years under the threshold,
        and `under` on those less than `band` years at or over it: the error rate is then
        promised for the faces next to the threshold (16- and 17-year-olds at 18 with a band
        of 2), not averaged with children who are never called over. None: every face.

    Raises:
      ValueError: an error rate outside (0, 0.5), or a band that is not positive.
    """
    if not 0 < error < 0.5:
        raise ValueError(f"--decision_error must be in (0, 0.5), got {error}")
    if band is not None and not band > 0:
        raise ValueError(f"--decision_band must be a positive number of years, got {band}")
    ages = np.asarray(sample["ages"], np.float64)
    pred = np.asarray(sample["predicted"], np.float64)
    near = np.ones(len(ages), bool)
    if band is not None:  # [T - band, T) under, [T, T + band) over
        near = (ages >= threshold - band) & (ages < threshold + band)
    under, over = pred[near & (ages < threshold)], pred[near & (ages >= threshold)]
    return Cut(float(threshold), float(error), over_above=_order_stat(under, error),
               under_below=-_order_stat(-over, error), n_under=len(under),
               n_over=len(over), band=None if band is None else float(band))


def decide(pred_years, cut: Cut) -> np.ndarray:
    """over / under / uncertain for each prediction (years)."""
    p = np.round(np.asarray(pred_years, np.float64), PREDICTION_DIGITS)
    over, under = p > cut.over_above, p < cut.under_below
    both = over & under  # the cuts cross: the midpoint decides, each bound still holds
    if both.any():
        middle = (cut.over_above + cut.under_below) / 2
        over, under = np.where(both, p >= middle, over), np.where(both, p < middle, under)
    return np.where(over, OVER, np.where(under, UNDER, UNCERTAIN)).astype(object)


def rates(true_years, calls, threshold: float) -> dict:
    """How decisions fared against true ages: the false-over rate (among faces under the
    threshold, the share called over: the rate the cut promises), the false-under rate, and
    the share left uncertain."""
    t = np.asarray(true_years, np.float64)
    calls = np.asarray(calls, object)
    under = t < threshold
    share = lambda mask: float(mask.mean()) if len(mask) else float("nan")
    return {"false_over": share(calls[under] == OVER), "false_under": share(calls[~under] == UNDER),
            "uncertain": share(calls == UNCERTAIN), "n_under": int(under.sum()),
            "n_over": int((~under).sum())}


# The bands of true age a threshold's rates are reported in (years from the threshold): under
# it, those just under (at 18: 16-17), a little under (13-15), and the rest; over it likewise.
BAND_EDGES = (2.0, 5.0)


def age_bands(threshold: float) -> list[tuple[str, float, float, str]]:
    """(name, low, high, side) of each band around a threshold, ages in [low, high): side
    "under" bands are scored by their false-over rate, "over" bands by their false-under."""
    t, (a, b) = threshold, BAND_EDGES

    def name(low, high):
        if low == -math.inf:
            return f"under {t - b:g}"
        if high == math.inf:
            return f"{low:g}+"
        whole = float(low).is_integer() and float(high).is_integer()
        return f"{low:g}-{high - 1:g}" if whole else f"{low:g}-{high:g}"

    edges = [(-math.inf, t - b), (t - b, t - a), (t - a, t), (t, t + a), (t + a, t + b),
             (t + b, math.inf)]
    return [(name(lo, hi), lo, hi, "under" if hi <= t else "over") for lo, hi in edges]


def band_rates(true_years, calls, threshold: float) -> dict:
    """Per band of true age (age_bands): the faces in it, the share wrongly called (over for
    bands under the threshold, under for bands over it) and the share decided at all."""
    t = np.asarray(true_years, np.float64)
    calls = np.asarray(calls, object)
    out = {}
    for name, low, high, side in age_bands(threshold):
        inside = (t >= low) & (t < high)
        n = int(inside.sum())
        wrong = OVER if side == "under" else UNDER
        out[name] = {"side": side, "faces": n,
                     "wrong": float((calls[inside] == wrong).mean()) if n else float("nan"),
                     "decided": float((calls[inside] != UNCERTAIN).mean()) if n else float("nan")}
    return out


def challenge_rate(true_years, pred_years, threshold: float,
                   margin: float = CHALLENGE_MARGIN) -> float:
    """NIST's Challenge-(T + margin) false-positive rate: among faces under T, the share
    estimated at or above T + margin (they would pass a Challenge policy unchecked)."""
    t = np.asarray(true_years, np.float64)
    p = np.asarray(pred_years, np.float64)
    under = t < threshold
    return float((p[under] >= threshold + margin).mean()) if under.any() else float("nan")


def parse_thresholds(values) -> list[float]:
    """--thresholds as numbers (years), sorted, each once.

    Raises:
      ValueError: a value that is not an age in (0, 130).
    """
    out = []
    for v in values or ():
        try:
            t = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"--thresholds: {v!r} is not an age in years") from None
        if not 0 < t < 130:
            raise ValueError(f"--thresholds: {v!r} is not an age in years (0-130)")
        out.append(t)
    return sorted(set(out))
