"""Tests for age-tf-export --format=onnx: onnxruntime serves what the SavedModel serves."""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.integration  # trains models or runs the commands

ort = pytest.importorskip("onnxruntime")


def _onnx_ages(path, faces):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: faces})))
    return out


def _test_faces(data_dir, image_size, count=64):
    from age_tf.data import pipeline
    from age_tf.data import prepared as prepared_lib

    manifest, images_dir = prepared_lib.load_manifest(data_dir, "test")
    manifest = manifest.head(count)
    return pipeline.map_images(None, manifest, images_dir, pipeline.PipelineConfig(batch_size=64),
                               image_size)


def test_onnx_export_serves_the_saved_models_ages_and_intervals(trained_run, tmp_path):
    # Hostile-input item 17: tf2onnx wrote a graph onnxruntime refused (Erfc, the head's
    # exact GELU); the export computes the same GELU with Erf.
    import json

    from age_tf import export_format
    from age_tf.serve.served_model import AgeModel
    from age_tf.train import export

    model_dir, data_dir = trained_run
    out = str(tmp_path / "age.onnx")
    export.export_run(export.ExportConfig(model_dir=model_dir, format="onnx", out=out))
    served = AgeModel(model_dir)
    faces = _test_faces(data_dir, served.image_size)
    assert len(faces) == 64
    want, got = served(faces), _onnx_ages(out, faces)
    assert set(got) == {"age", "age_low", "age_high"}
    for key in got:
        assert np.abs(got[key] - want[key]).max() < 0.01, key  # years
    card = json.load(open(export_format.card_path(out)))
    assert card["format"] == "onnx" and len(card["file_sha256"]) == 64
    export_format.check_card(card, out)
    with pytest.raises(ValueError, match="--overwrite"):
        export.export_run(export.ExportConfig(model_dir=model_dir, format="onnx", out=out))


@pytest.mark.slow
def test_onnx_of_efficientnet_b3_equals_its_saved_model(tmp_path):
    # Both backbones (the default tier checks MobileNetV2 on a trained run; this one builds
    # EfficientNet-B3 with random weights: same layers, same GELU head).
    from age_tf.serve.served_model import AgeModel
    from age_tf.train import export, models

    model = models.build_model(models.ModelConfig(backbone="efficientnet_b3", weights="none",
                                                  image_size=64, tune="head"))
    calibration = {"coverage": 0.9, "edges": [20.0, 40.0], "half_widths": [5.0, 8.0, 12.0]}
    export.export_saved_model(model, 64, str(tmp_path / "export"), calibration)
    faces = np.random.default_rng(0).uniform(0, 255, (64, 64, 64, 3)).astype(np.float32)
    want = AgeModel(str(tmp_path / "export"))(faces)
    path = tmp_path / "b3.onnx"
    path.write_bytes(export.onnx_bytes(model, 64, calibration))
    got = _onnx_ages(str(path), faces)
    for key in ("age", "age_low", "age_high"):
        assert np.abs(got[key] - want[key]).max() < 0.01, key
    assert os.path.getsize(path) > 1e6
