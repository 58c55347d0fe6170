"""Backbone registry and the fine-tuning model: ImageNet CNN + three-layer GELU head."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from age_tf.train import heads, standin_weights
from age_tf.train.train_config import BACKBONE_NAMES, TUNE_MODES, WEIGHT_CHOICES, ModelConfig  # noqa: F401  (the model's flags)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One registered backbone.

    Attributes:
      constructor: keras.applications function.
      normalization: the layer that maps [0, 255] pixels to what the backbone expects, or
        None when the backbone normalizes inside itself.
      expects: human-readable input contract (also shown by `age-tf-models`).
      native_size: input size of the published model (the study's Table 1 sizes).
      imagenet_file: the no-top weights file Keras caches in ~/.keras/models/.
    """

    constructor: Callable
    normalization: Callable[[], keras.layers.Layer] | None
    expects: str
    native_size: int
    imagenet_file: str
    # Makes a backbone built with weights=<file> compute what Keras' weights="imagenet"
    # construction computes with the same file (None: the two constructions agree).
    match_imagenet: Callable[[keras.Model], bool] | None = None


# Keras' EfficientNet normalizes with mean/variance weights loaded from the file; with
# weights="imagenet" (and only then) it adds a weightless Rescaling(1/sqrt(stddev)) after
# them (keras/src/applications/efficientnet.py). A model built from the same file by path
# lacks that layer: same weights, inputs ~2x smaller. Folding the factor into the variance
# weight gives the same function without the layer.
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _efficientnet_match_imagenet(backbone: keras.Model) -> bool:
    """If the loaded weights are Keras' ImageNet ones, folds the missing Rescaling in.

    Recognized by the normalization statistics the ImageNet file carries (mean = ImageNet
    mean, variance = ImageNet stddev squared); a model trained from scratch or already
    folded carries others and is left alone.

    Returns:
      True if the variance was folded.
    """
    norm = next(l for l in backbone.layers if isinstance(l, keras.layers.Normalization))
    mean = keras.ops.convert_to_numpy(norm.adapt_mean)
    var = keras.ops.convert_to_numpy(norm.adapt_variance)
    if not (np.allclose(mean, _IMAGENET_MEAN, atol=1e-6) and np.allclose(var, _IMAGENET_STD ** 2, atol=1e-7)):
        return False
    # (x - m) / sqrt(v) * (1 / sqrt(s)) == (x - m) / sqrt(v * s)
    norm.adapt_variance.assign((var * _IMAGENET_STD).astype(var.dtype))
    norm.finalize_state()
    return True


BACKBONES: dict[str, Backbone] = {
    # MobileNetV2 has no preprocessing inside: it expects pixels scaled to [-1, 1]
    # (keras.applications.mobilenet_v2.preprocess_input).
    "mobilenet_v2": Backbone(
        constructor=keras.applications.MobileNetV2,
        normalization=lambda: keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_minus1_1"),
        expects="[-1, 1] (Rescaling layer added in front)",
        native_size=224,
        imagenet_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    # Keras' EfficientNet has Rescaling + Normalization layers built in: it expects raw
    # [0, 255] pixels, so nothing is added in front.
    "efficientnet_b3": Backbone(
        constructor=keras.applications.EfficientNetB3,
        normalization=None,
        expects="[0, 255] (normalizes inside the model)",
        native_size=300,
        imagenet_file="efficientnetb3_notop.h5",
        match_imagenet=_efficientnet_match_imagenet,
    ),
}
assert sorted(BACKBONES) == list(BACKBONE_NAMES), "train_config.BACKBONE_NAMES lists the registry"


def _weights_arg(cfg: ModelConfig):
    return None if cfg.weights in ("none", "standin") else cfg.weights


def build_backbone(cfg: ModelConfig) -> keras.Model:
    """The registered backbone without its classifier, with global average pooling.

    Raises:
      RuntimeError: ImageNet weights requested but not cached and not downloadable.
    """
    spec = BACKBONES[cfg.backbone]
    try:
        backbone = spec.constructor(
            input_shape=(cfg.image_size, cfg.image_size, 3),
            include_top=False,
            weights=_weights_arg(cfg),
            pooling="avg",
        )
        if cfg.weights == "standin":
            standin_weights.load_backbone(backbone, cfg.backbone)
            return backbone
        if cfg.weights not in WEIGHT_CHOICES and spec.match_imagenet is not None:
            if spec.match_imagenet(backbone):
                logging.info("%s holds Keras' ImageNet weights: normalization adjusted to match "
                             "the weights='imagenet' model", cfg.weights)
        return backbone
    except Exception as e:  # urllib / OSError / ValueError: all mean "no weights here".
        if cfg.weights != "imagenet":
            raise
        cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "models")
        raise RuntimeError(
            f"could not load ImageNet weights for {cfg.backbone} ({type(e).__name__}: {e}). "
            f"Offline? Put {spec.imagenet_file} in {cache}/ (Keras' cache), or pass "
            "--weights=/path/to/weights.h5, or --weights=none to train from scratch."
        ) from e


def synchronizes_batchnorm(cfg: ModelConfig, replicas: int) -> bool:
    """Whether BatchNorm statistics are all-reduced: only with several replicas training BN."""
    return cfg.sync_batchnorm and cfg.tune == "full" and not cfg.freeze_batchnorm and replicas > 1


def build_model(cfg: ModelConfig) -> keras.Model:
    """Backbone + head: Dense-GELU-Dense-GELU, then the head's output and decoding layers
    (heads.HEADS; regression: Dense(1)); input float [0, 255] pixels, output the served age
    / AGE_SCALE.

    In 'head' mode the backbone is frozen and called with training=False, so its BatchNorm
    layers keep their ImageNet statistics even when the head trains. In 'full' mode every
    layer trains, BatchNorm statistics included (as in the study's PyTorch runs), unless
    `freeze_batchnorm`.
    The output layer is float32 even under a mixed-precision policy.
    """
    cfg.validate()
    spec = BACKBONES[cfg.backbone]
    backbone = build_backbone(cfg)
    sync = synchronizes_batchnorm(cfg, tf.distribute.get_strategy().num_replicas_in_sync)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if cfg.bn_momentum is not None:
                layer.momentum = cfg.bn_momentum
            layer.synchronized = sync
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = spec.normalization()(inputs) if spec.normalization else inputs
    if cfg.tune == "head":
        backbone.trainable = False
        x = backbone(x, training=False)
    else:
        backbone.trainable = True
        if cfg.freeze_batchnorm:
            for layer in backbone.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False  # Keras 3: a frozen BatchNorm runs in inference mode
        x = backbone(x)
    for i, units in enumerate(cfg.head_units):
        x = keras.layers.Dense(units, activation="gelu", name=f"head_dense{i + 1}")(x)
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout{i + 1}")(x)
    head = heads.HEADS[cfg.head]
    outputs = head.decode()(head.output()(x))
    model = keras.Model(inputs, outputs, name=f"{cfg.backbone}_{cfg.tune}")
    trainable, frozen = count_params(model)
    logging.info("%s: %d trainable, %d frozen parameters", model.name, trainable, frozen)
    return model


def is_head_layer(layer) -> bool:
    """A layer of the head (what head-mode tuning trains, and its decoding)."""
    return layer.name.startswith("head_") or layer.name in ("age", heads.RAW_LAYER,
                                                            heads.SERVED_LAYER)


def feature_extractor(model: keras.Model) -> keras.Model:
    """Pixels -> pooled backbone features, sharing the model's layers (inference mode)."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in model.layers[1:]:
        if is_head_layer(layer):
            break
        x = layer(x, training=False)
    return keras.Model(inputs, x, name="features")


def head_model(model: keras.Model, raw: bool = False) -> keras.Model:
    """Pooled features -> served age (or, with `raw`, what the loss sees), sharing the
    model's head layers (training it trains them)."""
    first = next(layer for layer in model.layers if is_head_layer(layer))
    inputs = keras.Input((first.input.shape[-1],), name="features")
    last = heads.raw_layer_name(model) if raw else heads.SERVED_LAYER
    x = inputs
    for layer in model.layers:
        if is_head_layer(layer):
            x = layer(x)
            if layer.name == last:
                break
    return keras.Model(inputs, x, name="head_raw" if raw else "head")


def with_distribution(model: keras.Model) -> keras.Model | None:
    """Pixels -> [served age, 101 age logits] for a head that serves its softmax's expectation
    (classification, dldl, mean_variance), sharing the model's layers; None for the others."""
    if not isinstance(model.get_layer(heads.SERVED_LAYER), heads.ExpectedAge):
        return None
    return keras.Model(model.input, [model.output, model.get_layer(heads.RAW_LAYER).output],
                       name=f"{model.name}_distribution")


def raw_model(model: keras.Model) -> keras.Model:
    """Pixels -> what the loss sees (the model itself for regression), sharing its layers."""
    name = heads.raw_layer_name(model)
    if name == heads.SERVED_LAYER:
        return model
    return keras.Model(model.input, model.get_layer(name).output, name=f"{model.name}_raw")


def count_params(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return trainable, frozen
