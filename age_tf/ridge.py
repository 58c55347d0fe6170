"""Ridge regression with an unpenalized intercept, from sufficient statistics.

Written once for the pixel baseline and the audit's cross-fitted heads: a fit needs only
X^T X and X^T y of the design matrix (features plus a column of ones), so folds can be
fitted by subtracting one fold's statistics from the total.
"""

from __future__ import annotations

import numpy as np


def design(x: np.ndarray) -> np.ndarray:
    """Features (float64) with a trailing column of ones for the intercept."""
    return np.c_[np.asarray(x, np.float64), np.ones(len(x))]


def statistics(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X^T X, X^T y) of the design matrix of x."""
    xi = design(x)
    return xi.T @ xi, xi.T @ np.asarray(y, np.float64)


def solve(gram: np.ndarray, moment: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge weights (intercept last, not penalized) from (X^T X, X^T y)."""
    reg = alpha * np.eye(len(gram))
    reg[-1, -1] = 0.0
    return np.linalg.solve(gram + reg, moment)


def fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge weights of y on x (intercept last)."""
    return solve(*statistics(x, y), alpha)


def predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return design(x) @ w
