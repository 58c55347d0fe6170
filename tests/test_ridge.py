"""Tests for age_tf.ridge: ridge with an unpenalized intercept."""

import numpy as np

from age_tf import ridge


def test_fit_recovers_a_linear_function_with_its_intercept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0
    w = ridge.fit(x, y, 1e-6)
    np.testing.assert_allclose(w, [1.0, -2.0, 0.5, 3.0], atol=1e-4)
    np.testing.assert_allclose(ridge.predict(x, w), y, atol=1e-4)


def test_the_intercept_is_not_penalized():
    # A huge penalty shrinks the slopes to zero but leaves the mean.
    x = np.arange(10.0)[:, None]
    y = 2 * x[:, 0] + 7
    w = ridge.fit(x, y, 1e12)
    assert abs(w[0]) < 1e-6 and abs(w[1] - y.mean()) < 1e-6


def test_statistics_add_over_parts():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=50)
    g, m = ridge.statistics(x, y)
    g1, m1 = ridge.statistics(x[:20], y[:20])
    g2, m2 = ridge.statistics(x[20:], y[20:])
    np.testing.assert_allclose(g, g1 + g2)
    np.testing.assert_allclose(m, m1 + m2)
