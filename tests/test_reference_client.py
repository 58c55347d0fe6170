"""docs/reference_client.py (Pillow + numpy + LiteRT, no TensorFlow) answers what
age-tf-predict answers on the same face files."""

import importlib.util
import io
import os
import subprocess
import sys

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


@pytest.fixture(scope="module")
def tflite(trained_run, tmp_path_factory):
    """The trained run exported to TFLite (with its card), once for this file's tests."""
    pytest.importorskip("ai_edge_litert")
    out = str(tmp_path_factory.mktemp("tflite") / "model.tflite")
    export.export_run(export.ExportConfig(model_dir=trained_run[0], format="tflite", out=out))
    return out


@pytest.mark.integration
def test_reference_client_answers_as_age_tf_predict(tflite, trained_run):
    manifest, images_dir = prepared_lib.load_manifest(trained_run[1], "test")
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


def _run_client(*args, timeout=120):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "reference_client.py"),
                        *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def _damaged_models(tflite: str, folder):
    """(name, model path) of each damage a copied model can suffer; cards copied beside."""
    import shutil

    data = open(tflite, "rb").read()
    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle:middle + 4096] = bytes(b ^ 0xFF for b in flipped[middle:middle + 4096])
    rng = np.random.default_rng(0)
    cases = {"flipped": bytes(flipped), "truncated": data[:len(data) // 3], "empty": b"",
             "random": rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes(),
             "onnx": b"\x08\x07\x12\x07tf2onnx" + bytes(100)}
    out = []
    for name, content in cases.items():
        path = folder / f"{name}.tflite"
        path.write_bytes(content)
        shutil.copy(tflite + ".json", str(path) + ".json")
        out.append((name, str(path)))
    no_card = folder / "no_card.tflite"
    no_card.write_bytes(data)
    return out + [("no card", str(no_card))]


@pytest.mark.integration
def test_the_client_refuses_every_damaged_model_in_one_line(tflite, trained_run, tmp_path):
    """A model with 4 KiB of flipped weights answered other ages with status 0 before; it and
    truncated, empty, random, ONNX-bytes and card-less models are each refused with one line
    naming the file, status 1 (a traceback before)."""
    manifest, images_dir = prepared_lib.load_manifest(trained_run[1], "test")
    face = os.path.join(images_dir, manifest["path"].iat[0])
    for name, model in _damaged_models(tflite, tmp_path):
        code, out, err = _run_client(model, face)
        assert code == 1 and out == "", (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "tflite" in lines[0], (
            name, err)


@pytest.mark.integration
def test_the_client_answers_each_photo_as_it_goes_and_names_each_bad_one(tflite, trained_run,
                                                                         tmp_path):
    """Good faces answered in order; a FIFO (it hung the client before), a truncated JPEG, a
    900 MP PNG, a folder and a missing file each one line naming it; status 1."""
    import zlib

    manifest, images_dir = prepared_lib.load_manifest(trained_run[1], "test")
    good = [os.path.join(images_dir, p) for p in manifest["path"][:2]]
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(good[0], "rb").read()[:300])
    bomb = tmp_path / "bomb.png"  # a 30,000 x 30,000 PNG header over a tiny compressed body
    header = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", (30_000).to_bytes(4, "big") * 2
                                                   + bytes([8, 2, 0, 0, 0])))
    bomb.write_bytes(header + _png_chunk(b"IDAT", zlib.compress(bytes(1000)))
                     + _png_chunk(b"IEND", b""))
    bad = [str(fifo), str(truncated), str(bomb), str(tmp_path), str(tmp_path / "absent.jpg")]
    code, out, err = _run_client(tflite, good[0], *bad, good[1], timeout=60)
    assert code == 1
    answered = out.strip().splitlines()
    assert [line.split(":")[0] for line in answered] == good
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad)
    for path, line in zip(bad, errors):
        assert line.startswith(f"error: {path}: "), line
    assert "not a regular file" in errors[0] and "not a readable image" in errors[1]
    assert "900000000 pixels" in errors[2]  # Pillow's bomb check says it, before any decode


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


@pytest.mark.integration
def test_the_client_decides_at_thresholds_as_age_tf_predict(tflite, trained_run):
    """--thresholds: the same over / under / uncertain as age-tf-predict for every face,
    from the card's validation pairs."""
    import pandas as pd

    manifest, images_dir = prepared_lib.load_manifest(trained_run[1], "test")
    paths = [os.path.join(images_dir, p) for p in manifest["path"][:30]]
    text, _, code = predict.run(predict.PredictConfig(
        model=tflite, faces="given", output="csv", thresholds=(18.0, 40.0),
        decision_error=0.1), paths)
    assert code == 0
    served = pd.read_csv(io.StringIO(text))
    code, out, err = _run_client(tflite, "--thresholds=40,18", "--decision_error=0.1", *paths)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(paths)
    for line, (_, row) in zip(lines, served.iterrows()):
        calls = [part.strip() for part in line.split(";")[1:]]
        assert calls == [f"{row['decision_18']} 18", f"{row['decision_40']} 40"], (line, row)
