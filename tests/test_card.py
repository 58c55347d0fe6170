"""The served model says what it is: the model card in every export, the calibrated
intervals in both signatures, and the TFLite export that carries both."""

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from age_tf import export_format, labels
from age_tf.data import pipeline
from age_tf.data import prepared as prepared_lib
from age_tf.evaluate import evaluation
from age_tf.serve.served_model import AgeModel
from age_tf.synthetic import synth
from age_tf.train import card, export, intervals, models, training
from age_tf.train.run_dir import RunDir

pytestmark = pytest.mark.integration


def test_the_cards_preprocessing_is_the_runs_config(trained_run):
    model_dir, data_dir = trained_run
    run = RunDir(model_dir)
    c = json.load(open(run.card))
    config = run.read_config()
    assert c["preprocessing"]["image_size"] == config["model"]["image_size"] == 32
    assert c["preprocessing"]["crop_faces"] == config["pipeline"]["crop_faces"] is False
    # Uncropped release crops: the margin they were made with, as the release records it.
    report = json.load(open(os.path.join(data_dir, "report.json")))
    assert c["preprocessing"]["crop_margin"] == report["inputs"]["release"]["crop_margin"]
    assert c["preprocessing"]["crop_margin"] == synth.CROP_MARGIN
    assert c["model"]["backbone"] == config["model"]["backbone"]
    assert c["data"]["rows"] == {k: v["images"] for k, v in report["splits"].items()}
    assert c["synthetic"] is True and c["warning"] == export_format.SYNTHETIC_WARNING
    assert c["config_hash"] == card.config_hash(run)
    assert c["intervals"] == json.load(open(run.intervals))
    assert set(c["versions"]) >= {"tensorflow", "keras", "age_tf"}
    # No path of the trainer's machine ships with the export: the data by name and hash.
    assert c["data"]["name"] == os.path.basename(data_dir)
    assert c["data"]["fingerprint"] == prepared_lib.PreparedDir(data_dir).fingerprint()
    text = json.dumps(c)
    assert os.path.abspath(data_dir) not in text and os.path.abspath(model_dir) not in text


def test_evaluation_puts_test_figures_and_coverage_in_the_card(trained_run):
    model_dir, data_dir = trained_run
    m = evaluation.evaluate(evaluation.EvaluateConfig(model_dir=model_dir, data_dir=data_dir,
                                                      bootstrap=0))
    c = json.load(open(RunDir(model_dir).card))
    assert c["test"]["mae_years"] == m["mae_years"] and c["test"]["plcc"] == m["plcc"]
    assert c["test"]["intervals"]["coverage"] == m["intervals"]["coverage"]
    assert set(c["test"]["by_decade"]) == set(m["by_decade"])
    pred = pd.read_csv(RunDir(model_dir).eval_predictions)
    inside = (pred["true_age"] >= pred["age_low"]) & (pred["true_age"] <= pred["age_high"])
    assert m["intervals"]["coverage"] == pytest.approx(inside.mean())


@pytest.fixture(scope="module")
def fresh_run(prepared, tmp_path_factory):
    """A tiny run trained while every manifest read is recorded."""
    from conftest import _tiny_config

    read = []
    real = prepared_lib.load_manifest

    def spy(data_dir, split):
        read.append(split)
        return real(data_dir, split)

    mp = pytest.MonkeyPatch()
    mp.setattr(prepared_lib, "load_manifest", spy)
    try:
        cfg = _tiny_config(prepared[0], str(tmp_path_factory.mktemp("fresh") / "run"),
                           epochs=1, steps_per_epoch=2, interval_method="normalized")
        training.train_and_evaluate(cfg)
    finally:
        mp.undo()
    return cfg, read


def test_no_test_value_enters_the_calibration(fresh_run):
    cfg, read = fresh_run
    assert "test" not in read and "val" in read
    # The interval is the conformal one of the validation residuals, normalized by the scale
    # fitted on the training residuals, recomputed here from those two splits alone.
    model = keras.models.load_model(RunDir(cfg.model_dir).model_keras)
    got = json.load(open(RunDir(cfg.model_dir).intervals))
    assert got["method"] == intervals.NORMALIZED
    low, high = got["age_range"]
    (t, p, f), (tv, pv, fv) = (training.features_and_years(cfg, model, s) for s in ("train", "val"))
    fit = intervals.fit_scale(f, t, np.clip(p, low, high))
    want = intervals.calibrate_normalized(tv, np.clip(pv, low, high), fv, fit,
                                          cfg.interval_coverage)
    assert got["quantile"] == pytest.approx(want["quantile"], rel=1e-4)
    np.testing.assert_allclose(got["scale_weights"], want["scale_weights"], rtol=1e-4, atol=1e-8)
    # The served predictions of the validation faces are the model's own.
    pred = labels.to_years(pipeline.map_images(lambda x: model(x, training=False), *_val(cfg),
                                               cfg.pipeline, 32).astype(np.float64))
    np.testing.assert_allclose(pred.reshape(-1), pv, atol=1e-3)


def _val(cfg):
    return prepared_lib.load_manifest(cfg.data_dir, "val")


def test_both_signatures_serve_the_calibrated_interval(fresh_run):
    cfg, _ = fresh_run
    run = RunDir(cfg.model_dir)
    calibration = json.load(open(run.intervals))
    manifest, images_dir = prepared_lib.load_manifest(cfg.data_dir, "val")
    paths = [os.path.join(images_dir, p) for p in manifest["path"][:8]]
    data = [open(p, "rb").read() for p in paths]
    loaded = tf.saved_model.load(run.export)
    by_bytes = loaded.signatures[export_format.BYTES_SIGNATURE](image_bytes=tf.constant(data))
    images = np.stack([pipeline.resize(pipeline.decode(tf.constant(d)), 32).numpy() for d in data])
    by_images = loaded.signatures[export_format.IMAGES_SIGNATURE](images=tf.constant(images, tf.float32))
    model = keras.models.load_model(run.model_keras)
    features = models.feature_extractor(model)(images.astype(np.float32), training=False).numpy()
    low, high = intervals.interval(by_images["age"].numpy(), calibration, features)
    for out in (by_bytes, by_images):
        np.testing.assert_allclose(out["age"].numpy(), by_images["age"].numpy(), atol=1e-4)
        np.testing.assert_allclose(out["age_low"].numpy(), low, atol=1e-3)
        np.testing.assert_allclose(out["age_high"].numpy(), high, atol=1e-3)


SIZE = 64


def _faces(prepared, n=64, size=SIZE):
    manifest, images_dir = prepared_lib.load_manifest(prepared[0], "test")
    return np.stack([pipeline.resize(pipeline.decode(tf.io.read_file(os.path.join(images_dir, p))),
                                     size).numpy() for p in manifest["path"][:n]]).astype(np.float32)


def _model_with_a_spread(backbone="mobilenet_v2"):
    """The demo's model (stand-in backbone, 64 px) with a random head that spreads ages over
    decades (random backbone weights give every face nearly the same features); the same
    model whichever tests ran before (its hidden head layers draw from Keras' generator)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = models.build_model(models.ModelConfig(backbone=backbone, image_size=SIZE,
                                                  weights="standin", tune="head"))
    layer = model.get_layer("age")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(0, 20 / np.sqrt(kernel.shape[0]), kernel.shape).astype("float32"),
                       bias + 0.4])
    return model


# EfficientNet-B3's conversion takes minutes here (its SavedModel trace and the converter):
# the slow tier and tools/bench_tflite.py, which measures both backbones, cover it.
@pytest.mark.parametrize("backbone", [
    "mobilenet_v2", pytest.param("efficientnet_b3", marks=pytest.mark.slow)])
def test_float32_tflite_serves_what_the_saved_model_serves(backbone, prepared, tmp_path):
    model = _model_with_a_spread(backbone)
    # The default intervals: a learned scale of the pooled features (matvec, exp in the graph).
    width = int(models.feature_extractor(model).output.shape[-1])
    calibration = {"method": intervals.NORMALIZED, "coverage": 0.9, "quantile": 1.5,
                   "scale_weights": list(np.random.default_rng(0).normal(0, 0.05, width + 2)),
                   "scale_bias": 2.0, "scale_min": 1.0, "counts": [1]}
    saved = export.export_saved_model(model, SIZE, str(tmp_path / "export"), calibration)
    path = tmp_path / "m.tflite"
    path.write_bytes(export.tflite_bytes(saved))
    faces = _faces(prepared)
    want, got = AgeModel(saved)(faces), AgeModel(str(path))(faces)
    assert np.ptp(want["age"]) > 1  # ages that differ, so agreement means something
    for key in ("age", "age_low", "age_high"):
        np.testing.assert_allclose(got[key], want[key], atol=0.01)  # years
    assert np.ptp(want["age_high"] - want["age_low"]) > 0.5  # a width per face


@pytest.mark.slow  # 24 s; float32 TFLite, the default export's path, stays in the default suite
def test_int8_tflite_runs_and_stays_near_float(prepared, tmp_path):
    model = _model_with_a_spread()
    saved = export.export_saved_model(model, SIZE, str(tmp_path / "export"))
    faces = _faces(prepared, 16)

    def representative():
        for face in faces:  # the calibration covers the range the ages are compared over
            yield {"images": face[None]}

    path = tmp_path / "m.tflite"
    path.write_bytes(export.tflite_bytes(saved, "int8", representative))
    want, got = AgeModel(saved).ages(faces), AgeModel(str(path)).ages(faces)
    # A random head spreads these faces over centuries, far beyond real ages: int8 keeps
    # their order and lands within a few percent of the spread on average (single faces can
    # be further off). A broken conversion (constant or scrambled ages) fails both bars.
    assert np.isfinite(got).all() and np.corrcoef(got, want)[0, 1] > 0.9
    assert np.abs(got - want).mean() < 0.1 * np.ptp(want)
