"""Tests for age-tf-predict on good and bad files."""

import os
import subprocess
import sys

import numpy as np
import pytest

from age_tf import labels
from age_tf.data import pipeline

pytestmark = pytest.mark.integration  # trains models or runs the commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def photos(trained_run, tmp_path_factory):
    model_dir, data_dir = trained_run
    manifest, images_dir = pipeline.load_manifest(data_dir, "test")
    d = tmp_path_factory.mktemp("photos")
    good = [os.path.join(images_dir, p) for p in manifest["path"][:3]]
    (d / "notes.jpg").write_text("not an image")
    return model_dir, good, str(d / "notes.jpg"), str(d / "missing.jpg")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "age_tf.cli.predict", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_predict_good_and_bad_files(photos):
    from age_tf.serve.predict import predict_files
    from age_tf.serve.served_model import AgeModel

    model_dir, good, text_file, missing = photos
    results = predict_files(AgeModel(model_dir), [good[0], text_file, missing, good[1]])
    assert [r["error"] for r in results] == ["", "not a JPEG or PNG image", "file not found", ""]
    # Same number as the Keras model through the pipeline.
    import keras
    import tensorflow as tf

    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    img = pipeline.resize(pipeline.decode(tf.io.read_file(good[0])), 32).numpy()[None].astype("float32")
    assert results[0]["age"] == pytest.approx(float(labels.to_years(np.asarray(model(img))[0])), abs=1e-3)
    assert results[0]["age_low"] <= results[0]["age"] <= results[0]["age_high"]


def test_predict_cli_text_and_csv(photos):
    model_dir, good, text_file, missing = photos
    r = _cli(f"--model={model_dir}/export", "--faces=given", *good)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count(" years") == 3
    r = _cli(f"--model={model_dir}", "--faces=given", "--output=csv", good[0], missing, text_file)
    assert r.returncode == 1  # some files failed
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "path,age,age_low,age_high,error" and len(lines) == 4
    assert lines[2].endswith(",,,,file not found")


def test_predict_cli_bad_model(tmp_path):
    r = _cli(f"--model={tmp_path}", "x.jpg")
    assert r.returncode == 2 and "no SavedModel here" in r.stderr
