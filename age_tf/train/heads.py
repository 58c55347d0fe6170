"""Head registry: what the network's last layer predicts, its loss, and how it becomes an age.

Every head sits on the same Dense-GELU layers (models.build_model) and ends in a layer named
`age_scaled` that outputs the served age in label units (age / AGE_SCALE), so everything
downstream (validation metrics, intervals, export, predict, audit) reads one number per face
whatever the head. The loss sees the layer before it (`raw_layer`): one number for
regression, 101 logits over the ages 0..100 for the distribution heads, 100 rank logits for
the ordinal head. The facts (weights, sigma, what is decoded) follow the CVPR 2024 unified
benchmark's losses (paplhjak/Facial-Age-Estimation-Benchmark, lib/loss.py) and the papers:
  regression      the study's: one unit, MAE on age / 100.
  classification  DEX (Rothe et al.): softmax over ages, cross-entropy on the whole-year
                  age; served age = the softmax's expectation.
  dldl            DLDL-v2 (Gao et al. 2018): KL divergence to a Gaussian around the age
                  (sigma 2 years) + lambda * |expected age - age| (lambda 1, in years).
  mean_variance   Pan et al. 2018: cross-entropy + lambda1 * (mean - age)^2 / 2
                  + lambda2 * variance (0.2 and 0.05).
  ordinal         CORAL (Cao et al. 2020): 100 "older than k" logits sharing one weight
                  vector, each its own bias; binary cross-entropy summed over the ranks;
                  served age = the number of ranks passed (logit > 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from age_tf import labels
from age_tf.train.train_config import HEAD_NAMES, LossWeights

# The distribution heads' ages: whole years 0..100 (the benchmark's labels go to 101);
# training refuses older labels for these heads (training.check_head_ages).
MAX_CLASS_AGE = labels.MAX_CLASS_AGE
AGES = np.arange(MAX_CLASS_AGE + 1, dtype=np.float32)


def class_of(y: tf.Tensor) -> tf.Tensor:
    """Labels (age / AGE_SCALE) -> whole-year class 0..100 (int32)."""
    years = tf.round(labels.to_years(tf.cast(y, tf.float32)))
    return tf.cast(tf.clip_by_value(years, 0.0, float(MAX_CLASS_AGE)), tf.int32)


def expectation(logits: tf.Tensor) -> tf.Tensor:
    """101 logits -> expected age in years."""
    return tf.reduce_sum(tf.nn.softmax(logits) * AGES, axis=-1)


def gaussian_targets(k: tf.Tensor, sigma: float) -> tf.Tensor:
    """Whole-year ages [B] -> label distributions [B, 101], normalized over 0..100."""
    d = AGES[None, :] - tf.cast(k, tf.float32)[:, None]
    g = tf.exp(-d * d / (2.0 * sigma * sigma))
    return g / tf.reduce_sum(g, axis=-1, keepdims=True)


def regression_loss(y, raw, w: LossWeights):
    # Exactly the study's step (the Table 2 runs train through this line).
    return tf.abs(tf.cast(raw, tf.float32) - y)


def classification_loss(y, raw, w: LossWeights):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(class_of(y), tf.cast(raw, tf.float32))


def dldl_loss(y, raw, w: LossWeights):
    logits = tf.cast(raw, tf.float32)
    k = class_of(y)
    target = gaussian_targets(k, w.sigma)
    # KL(target || softmax) = sum t log t - sum t log p; xlogy keeps 0 log 0 = 0.
    kl = tf.reduce_sum(tf.math.xlogy(target, target) - target * tf.nn.log_softmax(logits), -1)
    return kl + w.l1 * tf.abs(expectation(logits) - tf.cast(k, tf.float32))


def mean_variance_loss(y, raw, w: LossWeights):
    logits = tf.cast(raw, tf.float32)
    k = class_of(y)
    p = tf.nn.softmax(logits)
    mean = tf.reduce_sum(p * AGES, -1)
    variance = tf.reduce_sum(p * tf.square(AGES[None, :] - mean[:, None]), -1)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(k, logits)
    return ce + w.mean * tf.square(mean - tf.cast(k, tf.float32)) / 2.0 + w.variance * variance


def ordinal_loss(y, raw, w: LossWeights):
    logits = tf.cast(raw, tf.float32)
    ranks = tf.cast(AGES[None, :-1] < tf.cast(class_of(y), tf.float32)[:, None], tf.float32)
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(ranks, logits), -1)


@keras.saving.register_keras_serializable(package="age_tf")
class ExpectedAge(keras.layers.Layer):
    """101 logits -> the softmax's expected age, in label units (DEX's decoding)."""

    def call(self, logits):
        return labels.to_label(expectation(logits))

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]


@keras.saving.register_keras_serializable(package="age_tf")
class RanksPassed(keras.layers.Layer):
    """100 rank logits -> the number with logit > 0 (probability > 0.5), in label units."""

    def call(self, logits):
        return labels.to_label(tf.reduce_sum(tf.cast(logits > 0, tf.float32), axis=-1))

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]


@keras.saving.register_keras_serializable(package="age_tf")
class RankLogits(keras.layers.Layer):
    """CORAL's output layer: one weight vector shared by every rank, a bias per rank (the
    ranks cannot cross: the logits fall with k for every face)."""

    def __init__(self, ranks: int, **kwargs):
        super().__init__(**kwargs)
        self.ranks = ranks

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 1), initializer="glorot_uniform",
                                      name="kernel")
        # Descending biases start the ranks ordered (any start works; this one is quick).
        self.bias = self.add_weight(
            shape=(self.ranks,), name="bias",
            initializer=keras.initializers.Constant(np.linspace(2.0, -2.0, self.ranks)))

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.ranks)

    def get_config(self):
        return {**super().get_config(), "ranks": self.ranks}


@dataclasses.dataclass(frozen=True)
class Head:
    """One registered head.

    Attributes:
      loss: (labels [B] in age / AGE_SCALE, raw outputs, weights) -> per-face loss [B].
      output: builds the raw output layer (named `age` or `age_logits`).
      decode: builds the layer raw outputs -> served age in label units (named age_scaled).
      loss_text: the loss as the model card states it.
    """

    loss: Callable
    output: Callable[[], keras.layers.Layer]
    decode: Callable[[], keras.layers.Layer]
    loss_text: str


RAW_LAYER = "age_logits"
SERVED_LAYER = "age_scaled"


def _logits():
    return keras.layers.Dense(len(AGES), dtype="float32", name=RAW_LAYER)


HEADS: dict[str, Head] = {
    "regression": Head(
        regression_loss,
        lambda: keras.layers.Dense(1, dtype="float32", name="age"),
        lambda: keras.layers.Reshape((), dtype="float32", name=SERVED_LAYER),
        "MAE on age / 100 (the study's)"),
    "classification": Head(
        classification_loss, _logits,
        lambda: ExpectedAge(dtype="float32", name=SERVED_LAYER),
        "cross-entropy over whole-year ages 0-100; age = expectation (DEX)"),
    "dldl": Head(
        dldl_loss, _logits,
        lambda: ExpectedAge(dtype="float32", name=SERVED_LAYER),
        "KL to a Gaussian label distribution (sigma {sigma:g} years) + {l1:g} x |expected "
        "age - age| (DLDL-v2)"),
    "mean_variance": Head(
        mean_variance_loss, _logits,
        lambda: ExpectedAge(dtype="float32", name=SERVED_LAYER),
        "cross-entropy + {mean:g} x mean loss + {variance:g} x variance loss (Pan et al.)"),
    "ordinal": Head(
        ordinal_loss,
        lambda: RankLogits(MAX_CLASS_AGE, dtype="float32", name=RAW_LAYER),
        lambda: RanksPassed(dtype="float32", name=SERVED_LAYER),
        "binary cross-entropy over 100 'older than k' ranks, shared weights (CORAL); age = "
        "ranks passed"),
}
assert sorted(HEADS) == list(HEAD_NAMES), "train_config.HEAD_NAMES lists the registry"


def loss_text(name: str, weights: LossWeights) -> str:
    return HEADS[name].loss_text.format(**dataclasses.asdict(weights))


def raw_layer_name(model: keras.Model) -> str:
    """The layer whose output the loss sees (a model from before heads: regression's)."""
    return RAW_LAYER if any(l.name == RAW_LAYER for l in model.layers) else SERVED_LAYER


def age_distribution(logits: np.ndarray) -> np.ndarray:
    """101 logits per face -> probabilities of the ages 0..100 (float64, rows sum to 1)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def distribution_interval(probs: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `coverage` interval of each face's age distribution (years): the ages
    where its cumulative probability first reaches (1 - coverage) / 2 and (1 + coverage) / 2."""
    cdf = np.cumsum(probs, axis=-1)
    tail = (1.0 - coverage) / 2.0
    low = np.argmax(cdf >= tail, axis=-1)
    high = np.argmax(cdf >= 1.0 - tail - 1e-12, axis=-1)
    return AGES[low].astype(float), AGES[high].astype(float)
