"""Tests for age_tf.train.models: registry, normalization, tuning modes, weights, Table 1."""

import keras
import numpy as np
import pytest

from age_tf.train import models

S = 32


def _model(backbone="mobilenet_v2", tune="head", **kw):
    return models.build_model(models.ModelConfig(backbone=backbone, image_size=S, weights="none",
                                                 tune=tune, **kw))


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (n, S, S, 3)).astype("float32"),
            rng.uniform(0.1, 0.9, (n,)).astype("float32"))


@pytest.mark.parametrize("backbone", sorted(models.BACKBONES))
def test_builds_with_output_shape_and_dtype(backbone):
    model = _model(backbone)
    x, _ = _batch()
    y = model(x)
    assert tuple(y.shape) == (4,) and keras.backend.standardize_dtype(y.dtype) == "float32"
    assert model.input_shape == (None, S, S, 3)


def test_mobilenet_normalization_maps_to_minus1_1():
    layer = _model("mobilenet_v2").get_layer("to_minus1_1")
    out = np.asarray(layer(np.array([[[[0.0, 127.5, 255.0]]]], "float32")))
    np.testing.assert_allclose(out.reshape(-1), [-1.0, 0.0, 1.0], atol=1e-6)


def test_efficientnet_gets_raw_pixels_and_normalizes_inside():
    model = _model("efficientnet_b3")
    # Nothing between the input and the backbone: the pipeline's [0, 255] go straight in.
    assert not any(isinstance(l, keras.layers.Rescaling) for l in model.layers)
    backbone = model.get_layer("efficientnetb3")
    assert any(isinstance(l, keras.layers.Rescaling) for l in backbone.layers)
    assert any(isinstance(l, keras.layers.Normalization) for l in backbone.layers)


def _train_step(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae")
    x, y = _batch(8)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)


def _snapshot(layer):
    return [keras.ops.convert_to_numpy(w) for w in layer.weights]


@pytest.mark.integration  # trains
def test_head_mode_changes_only_head_and_keeps_bn_statistics():
    model = _model("mobilenet_v2", "head")
    backbone = [l for l in model.layers if isinstance(l, keras.Model)][0]
    before_bb = _snapshot(backbone)
    before_head = _snapshot(model.get_layer("head_dense1"))
    trainable, frozen = models.count_params(model)
    assert trainable == sum(np.prod(w.shape) for l in model.layers if l.name.startswith(("head", "age"))
                            for w in l.weights)
    _train_step(model)
    for a, b in zip(before_bb, _snapshot(backbone)):  # includes BN moving mean/variance
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_head, _snapshot(model.get_layer("head_dense1"))))


# 23 s: in the slow tier; head mode's twin (only the head changes) stays in the default one.
@pytest.mark.integration  # trains
@pytest.mark.slow
def test_full_mode_changes_backbone_and_bn_statistics():
    model = _model("mobilenet_v2", "full")
    backbone = [l for l in model.layers if isinstance(l, keras.Model)][0]
    conv = backbone.get_layer("Conv1")
    bn = backbone.get_layer("bn_Conv1")
    before_conv, before_bn = keras.ops.convert_to_numpy(conv.kernel), keras.ops.convert_to_numpy(bn.moving_mean)
    _train_step(model)
    assert not np.array_equal(before_conv, keras.ops.convert_to_numpy(conv.kernel))
    assert not np.array_equal(before_bn, keras.ops.convert_to_numpy(bn.moving_mean))


@pytest.mark.integration  # trains
# What --freeze_batchnorm does is backbone-independent (every BatchNormalization layer);
# EfficientNet-B3's graph costs a minute here, so its case is in the slow tier.
@pytest.mark.parametrize("backbone", [
    "mobilenet_v2", pytest.param("efficientnet_b3", marks=pytest.mark.slow)])
def test_full_mode_with_frozen_batchnorm_trains_what_it_serves(backbone):
    """--freeze_batchnorm: convolutions train, BatchNorm keeps every weight, and the model in
    training mode computes exactly what it serves (no batch statistics)."""
    model = _model(backbone, "full", freeze_batchnorm=True)
    inner = [l for l in model.layers if isinstance(l, keras.Model)][0]
    bns = [l for l in inner.layers if isinstance(l, keras.layers.BatchNormalization)]
    conv = next(l for l in inner.layers if isinstance(l, keras.layers.Conv2D))
    before_bn, before_conv = [_snapshot(l) for l in bns], _snapshot(conv)
    x, _ = _batch(8)
    # Dropout (EfficientNet's stochastic depth) aside, training and serving agree.
    for layer in inner.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    np.testing.assert_allclose(np.asarray(model(x, training=True)), np.asarray(model(x)),
                               rtol=1e-5, atol=1e-6)
    _train_step(model)
    for layer, before in zip(bns, before_bn):
        for a, b in zip(before, _snapshot(layer)):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_conv, _snapshot(conv)))
    assert not models.synchronizes_batchnorm(
        models.ModelConfig(tune="full", freeze_batchnorm=True), replicas=2)


def test_weights_from_file_give_identical_outputs(tmp_path):
    cfg = models.ModelConfig(backbone="mobilenet_v2", image_size=S, weights="none")
    first = models.build_backbone(cfg)
    path = str(tmp_path / "backbone.weights.h5")
    first.save_weights(path)
    second = models.build_backbone(models.ModelConfig(backbone="mobilenet_v2", image_size=S, weights=path))
    x, _ = _batch()
    np.testing.assert_allclose(np.asarray(first(x)), np.asarray(second(x)), rtol=0, atol=0)


def test_imagenet_offline_error_says_where_to_put_the_file(monkeypatch):
    def offline(**kw):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setitem(models.BACKBONES, "mobilenet_v2", models.BACKBONES["mobilenet_v2"].__class__(
        **{**models.BACKBONES["mobilenet_v2"].__dict__, "constructor": offline}))
    with pytest.raises(RuntimeError, match=r"mobilenet_v2_weights_tf_dim_ordering.*no_top.h5 in .*models/"):
        models.build_backbone(models.ModelConfig(weights="imagenet"))


def test_mixed_precision_output_is_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model("mobilenet_v2")
        assert keras.backend.standardize_dtype(model(_batch()[0]).dtype) == "float32"
        assert model.get_layer("head_dense1").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kw, message", [
    (dict(backbone="resnet"), "not registered"), (dict(tune="some"), "--tune"),
    (dict(weights="/no/such/file.h5"), "--weights"), (dict(image_size=8), "--image_size"),
])
def test_config_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        models.ModelConfig(**kw).validate()
