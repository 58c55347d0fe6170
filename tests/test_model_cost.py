"""Tests for age_tf.evaluate.model_cost: parameter and multiply-accumulate counts (Table 1)."""

from age_tf.evaluate import model_cost
from age_tf.train import models


def test_macs_known_answer_mobilenet_v2_224():
    # Sandler et al. 2018: MobileNetV2 1.0 at 224 has 300M multiply-adds.
    backbone = models.build_backbone(models.ModelConfig(image_size=224, weights="none"))
    assert abs(model_cost.count_macs(backbone) / 300e6 - 1) < 0.01


def test_model_cost_rows():
    rows = model_cost.model_cost(["mobilenet_v2"], [64])
    r = rows[0]
    assert r["imagenet_classifier_params"] == 3538984  # keras.applications MobileNetV2
    assert r["trainable_head"] == 1280 * 512 + 512 + 512 * 128 + 128 + 129
    assert r["trainable_full"] > r["trainable_head"]
    assert abs(r["gflops"] - 2 * r["gmacs"]) < 1e-9
    assert "| mobilenet_v2 | 64 |" in model_cost.model_cost_markdown(rows)


def test_rows_derived_from_one_model_equal_the_models_they_stand_for():
    """Table 1 builds only the full-tuning model: its head-mode and classifier columns must
    equal those of the head-mode model and the Keras classifier, built here."""
    import keras

    r = model_cost.model_cost(["mobilenet_v2"], [32])[0]
    head = models.build_model(models.ModelConfig(image_size=32, weights="none", tune="head"))
    assert r["trainable_head"] == models.count_params(head)[0]
    classifier = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=True,
                                                weights=None, classes=1000)
    assert r["imagenet_classifier_params"] == classifier.count_params()
    assert r["classifier_gmacs"] * 1e9 == model_cost.count_macs(classifier)
