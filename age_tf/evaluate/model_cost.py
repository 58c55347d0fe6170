"""Model size and cost: parameters per tuning mode and multiply-accumulates (Table 1)."""

from __future__ import annotations

import keras

from age_tf.evaluate.evaluate_config import ModelCostConfig  # noqa: F401  (its flags)
from age_tf.train import models


def _macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates of one layer for one image (convolutions and dense only)."""
    if isinstance(layer, keras.Model):
        return sum(_macs(sub) for sub in layer.layers)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        _, h, w, c = layer.output.shape
        kh, kw = layer.kernel_size
        return h * w * c * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, cout = layer.output.shape
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1]
        return h * w * cout * kh * kw * cin // layer.groups
    if isinstance(layer, keras.layers.Dense):
        in_shape = layer.input.shape
        positions = 1
        for d in in_shape[1:-1]:
            positions *= d
        return positions * in_shape[-1] * layer.units
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image, summed over the model graph's conv and dense layers.

    Elementwise work (BatchNorm, activations, pooling, squeeze-excite scaling) is left out,
    as in the papers' "MAdds"/"FLOPS" columns, which count multiply-adds.
    """
    return _macs(model)


# keras.applications' classifier top: global average pooling, dropout, Dense(1000).
IMAGENET_CLASSES = 1000


def model_cost(backbones: list[str], sizes: list[int | None], head_units=(512, 128)) -> list[dict]:
    """Size and cost per backbone and input size (None: its native size): the study's Table 1.

    Columns: params of the published ImageNet classifier (what the study's "params" column
    counts), params of our regression model, trainable params per tuning mode, and
    multiply-accumulates (GMACs: the study's "GFLOPS" column counts multiply-adds) and
    FLOPs (= 2 x MACs) of our model, computed from the built graph (weights=None).

    One model is built per row (the full-tuning one): the head mode trains exactly its head
    layers, and the classifier is the same backbone with Dense(1000) on the pooled features,
    so neither needs a model of its own (tests/test_model_cost.py checks both against built
    ones).
    """
    rows = []
    for name in backbones:
        spec = models.BACKBONES[name]
        for size in sizes:
            size = size or spec.native_size
            model = models.build_model(models.ModelConfig(
                backbone=name, image_size=size, weights="none", tune="full",
                head_units=tuple(head_units)))
            backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
            features = backbone.output.shape[-1]
            top = features * IMAGENET_CLASSES + IMAGENET_CLASSES
            backbone_macs = count_macs(backbone)
            macs = count_macs(model)
            rows.append({
                "backbone": name,
                "input": size,
                "expects": spec.expects,
                "imagenet_classifier_params": backbone.count_params() + top,
                "params": model.count_params(),
                "trainable_head": sum(models.count_params(layer)[0] for layer in model.layers
                                      if models.is_head_layer(layer)),
                "trainable_full": models.count_params(model)[0],
                "gmacs": macs / 1e9,
                "gflops": 2 * macs / 1e9,
                "classifier_gmacs": (backbone_macs + features * IMAGENET_CLASSES) / 1e9,
            })
            keras.backend.clear_session()
    return rows


def model_cost_markdown(rows: list[dict]) -> str:
    """Formats model_cost() rows as a markdown table."""
    head = ("| backbone | input | ImageNet classifier params | our params | trainable (head) "
            "| trainable (full) | GMACs (study's \"GFLOPS\") | GFLOPs (2 x MACs) | classifier GMACs |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['backbone']} | {r['input']} | {r['imagenet_classifier_params'] / 1e6:.2f}M "
        f"| {r['params'] / 1e6:.2f}M | {r['trainable_head'] / 1e6:.3f}M "
        f"| {r['trainable_full'] / 1e6:.2f}M | {r['gmacs']:.2f} | {r['gflops']:.2f} "
        f"| {r['classifier_gmacs']:.2f} |\n"
        for r in rows)
    return head + body
