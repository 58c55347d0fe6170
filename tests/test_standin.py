"""The shipped stand-in backbones: they load into today's architecture and still compute
what their cards recorded; a model change breaks these tests, not the demo."""

import os

import keras
import numpy as np
import pytest

from age_tf.standin import pretraining
from age_tf.train import models
from age_tf.train import standin_weights as weights

# Loads and runs the shipped networks on rendered faces.
pytestmark = pytest.mark.integration

SHIPPED = sorted(models.BACKBONES)


def test_every_backbone_ships_weights_and_a_card_within_budget():
    total = 0
    for name in SHIPPED:
        path = os.path.join(weights.STANDIN_DIR, f"{name}.npz")
        assert os.path.exists(path), f"no stand-in for {name}"
        total += os.path.getsize(path)
        card = weights.card(name)
        assert card["backbone"] == name
        assert card["command"].startswith("python tools/pretrain_standin.py")
        for key in ("images", "seed", "image_size", "people"):
            assert key in card["corpus"]
        assert card["training"]["epochs"] >= 1 and "age" in card["objective"]
        assert 0 < card["val"]["plcc"] <= 1
    assert total <= 30e6  # the budget for both files


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_their_recorded_check_figures(name):
    """Loads the whole pretraining network from the file into today's code and re-measures
    the card's check set (96 fixed renders): same figures, so nothing drifted."""
    card = weights.card(name)
    keras.backend.clear_session()
    got = pretraining.check_figures(name, card["corpus"]["image_size"])
    want = card["check"]
    assert got["images"] == want["images"] == pretraining.CHECK_IMAGES
    assert got["plcc"] == pytest.approx(want["plcc"], abs=0.005)
    assert got["mae_years"] == pytest.approx(want["mae_years"], abs=0.1)
    assert got["plcc"] > 0.5  # and the recorded network does predict age


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_backbones_keep_feature_norms_in_proportion(name):
    """No face may drive the features far off: the first EfficientNet-B3 stand-in gave ~1% of
    faces norms ~100x the median in inference mode (its pretraining saw batch statistics),
    and every head tuned on it extrapolated them to ages like -2,343 years."""
    keras.backend.clear_session()
    size = weights.card(name)["corpus"]["image_size"]
    faces = pretraining.render_corpus(384, seed=8, image_size=size, workers=1)["images"]
    norms = pretraining.feature_norms(pretraining.load_pretrain_model(name, size), faces)
    assert norms["max"] < 10 * norms["median"], norms


@pytest.mark.parametrize("name", SHIPPED)
def test_weights_standin_builds_the_finetuning_model_from_the_file(name):
    keras.backend.clear_session()
    model = models.build_model(models.ModelConfig(backbone=name, image_size=64,
                                                  weights="standin", tune="head"))
    backbone = next(l for l in model.layers if isinstance(l, keras.Model))
    with np.load(os.path.join(weights.STANDIN_DIR, f"{name}.npz")) as f:
        stored = dict(f)
    first_kernel = next(w for l in backbone.layers for w in l.weights if len(w.shape) == 4)
    key = next(k for k in stored if k.startswith("backbone/") and stored[k].ndim == 4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first_kernel),
                                  stored[key].astype(np.float32))
    # Different from a random start, i.e. really loaded.
    fresh = models.build_backbone(models.ModelConfig(backbone=name, image_size=64, weights="none"))
    k2 = next(w for l in fresh.layers for w in l.weights if len(w.shape) == 4)
    assert not np.allclose(keras.ops.convert_to_numpy(k2), stored[key].astype(np.float32))


def test_a_file_that_does_not_fit_is_refused_by_name(tmp_path):
    with np.load(os.path.join(weights.STANDIN_DIR, "mobilenet_v2.npz")) as f:
        arrays = dict(f)
    dropped = sorted(k for k in arrays if k.startswith("backbone/"))[5]
    del arrays[dropped]
    path = str(tmp_path / "broken.npz")
    np.savez(path, **arrays)
    backbone = models.build_backbone(models.ModelConfig(image_size=64, weights="none"))
    with pytest.raises(ValueError, match=r"broken\.npz does not fit today's architecture "
                                         r"\(1 weights missing.*pretrain_standin"):
        weights.load_backbone(backbone, "mobilenet_v2", path)


def test_float16_keeps_what_would_overflow():
    out = weights.to_float16({"small": np.ones(3, np.float32),
                              "huge": np.array([1e5], np.float32)})
    assert out["small"].dtype == np.float16 and out["huge"].dtype == np.float32


def test_corpus_is_deterministic_and_labelled():
    a = pretraining.render_corpus(12, seed=3, image_size=32, workers=1)
    b = pretraining.render_corpus(12, seed=3, image_size=32, workers=1)
    assert a["images"].shape == (12, 32, 32, 3) and a["images"].dtype == np.uint8
    np.testing.assert_array_equal(a["images"], b["images"])
    assert a["attributes"].shape == (12, len(pretraining.ATTRIBUTES))
    # Photos of one person share the person's traits.
    same = a["identity"] == a["identity"][0]
    assert np.all(a["attributes"][same] == a["attributes"][0])


def test_training_steps_follow_the_init_chain():
    first = {"training": {"epochs": 8, "batchnorm": "trained (batch statistics)"}}
    second = {"training": {"epochs": 2, "batchnorm": "frozen (inference mode)"}, "init": first}
    third = {"training": {"epochs": 6, "batchnorm": "frozen (inference mode)"}, "init": second}
    assert [t["epochs"] for t in weights.training_steps(third)] == [8, 2, 6]
    assert [t["epochs"] for t in weights.training_steps(first)] == [8]
    from age_tf import experiment

    shipped = weights.card("efficientnet_b3")
    steps = weights.training_steps(shipped)
    assert f"{sum(t['epochs'] for t in steps)} epochs" in experiment.standin_note(["efficientnet_b3"])


def test_training_corpora_lists_each_corpus_once_oldest_first():
    a = {"images": 30000, "seed": 1, "train_images": 27102, "people": 7624}
    b = {"images": 45000, "seed": 2, "train_images": 40545, "people": 11000}
    first = {"training": {"epochs": 8}, "corpus": a}
    second = {"training": {"epochs": 2}, "corpus": dict(a), "init": first}
    third = {"training": {"epochs": 6}, "corpus": b, "init": second}
    assert weights.training_corpora(third) == [a, b]
    assert weights.training_corpora(second) == [a]
    from age_tf import experiment

    shipped = weights.card("efficientnet_b3")
    corpora = weights.training_corpora(shipped)
    note = experiment.standin_note(["efficientnet_b3"])
    assert " + ".join(f"{k['train_images']:,}" for k in corpora) + " faces" in note
