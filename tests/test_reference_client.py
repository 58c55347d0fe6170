"""docs/reference_client.py (Pillow + numpy + LiteRT, no TensorFlow) answers what
age-tf-predict answers on the same face files."""

import importlib.util
import io
import os

import numpy as np
import pytest
import tensorflow as tf

from age_tf.data import pipeline
from age_tf.data import prepared as prepared_lib
from age_tf.serve import predict
from age_tf.train import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _client():
    spec = importlib.util.spec_from_file_location(
        "reference_client", os.path.join(ROOT, "docs", "reference_client.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_clients_resize_is_tensorflows_bilinear_resize():
    rng = np.random.default_rng(0)
    for shape, size in (((37, 53, 3), 32), ((200, 180, 3), 64), ((20, 20, 3), 64)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ours = _client().resize_bilinear(image, size)
        tfs = tf.image.resize(image, [size, size], method="bilinear").numpy()
        np.testing.assert_allclose(ours, tfs, atol=1e-3)


def test_age_tf_decodes_jpeg_as_pillow_does(prepared):
    from PIL import Image

    manifest, images_dir = prepared_lib.load_manifest(prepared[0], "test")
    for rel in manifest["path"][:20]:
        path = os.path.join(images_dir, rel)
        with Image.open(path) as im:
            pil = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(pipeline.read_image(path), pil)


@pytest.mark.integration
def test_reference_client_answers_as_age_tf_predict(trained_run, tmp_path):
    pytest.importorskip("ai_edge_litert")
    model_dir, data_dir = trained_run
    tflite = str(tmp_path / "model.tflite")
    export.export_run(export.ExportConfig(model_dir=model_dir, format="tflite", out=tflite))
    manifest, images_dir = prepared_lib.load_manifest(data_dir, "test")
    paths = [os.path.join(images_dir, p) for p in manifest["path"][:40]]
    text, _, code = predict.run(predict.PredictConfig(model=tflite, faces="given",
                                                      output="csv"), paths)
    assert code == 0
    import pandas as pd

    served = pd.read_csv(io.StringIO(text))
    client = _client()
    runner, size, card = client.load(tflite)
    ours = client.predict(runner, size, paths)
    np.testing.assert_allclose([r["age"] for r in ours], served["age"], atol=0.05)
    np.testing.assert_allclose([r["age_low"] for r in ours], served["age_low"], atol=0.05)
    np.testing.assert_allclose([r["age_high"] for r in ours], served["age_high"], atol=0.05)
