"""Tests for age-tf-predict on good and bad files."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from age_tf import labels
from age_tf.data import pipeline
from age_tf.data import prepared as prepared_lib

pytestmark = pytest.mark.integration  # trains models or runs the commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def photos(trained_run, tmp_path_factory):
    model_dir, data_dir = trained_run
    manifest, images_dir = prepared_lib.load_manifest(data_dir, "test")
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
    errors = [r["error"] for r in results]
    assert errors[0] == errors[3] == "" and errors[2] == "file not found"
    assert errors[1].startswith("not a JPEG or PNG image")
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
    assert lines[0] == "path,age,age_low,age_high,error,warning" and len(lines) == 4
    assert lines[2].endswith(",,,,file not found,")


def test_predict_cli_bad_model(tmp_path):
    r = _cli(f"--model={tmp_path}", "x.jpg")
    assert r.returncode == 2 and "no SavedModel here" in r.stderr


def test_annotated_copies_never_replace_a_photo_or_each_other(tmp_path):
    # Hostile-input item 1: --annotate=a a/photo.jpg replaced the photo; two photo.jpg kept one.
    from age_tf.serve.predict import annotation_paths

    for d in ("a", "b", "out"):
        (tmp_path / d).mkdir()
    a, b = str(tmp_path / "a" / "photo.jpg"), str(tmp_path / "b" / "photo.jpg")
    (tmp_path / "out" / "photo-2.jpg").write_text("someone's file")
    got = annotation_paths([a, b, str(tmp_path / "noext")], str(tmp_path / "a"))
    assert got[a] == str(tmp_path / "a" / "photo-2.jpg") and got[b] == str(tmp_path / "a" / "photo-3.jpg")
    assert got[str(tmp_path / "noext")] == str(tmp_path / "a" / "noext.jpg")
    got = annotation_paths([a, b], str(tmp_path / "out"))
    assert got == {a: str(tmp_path / "out" / "photo.jpg"), b: str(tmp_path / "out" / "photo-3.jpg")}


def test_annotating_keeps_every_input_and_every_prediction(photos, tmp_path):
    from age_tf.serve import predict

    model_dir, good, _, _ = photos
    a = tmp_path / "a"
    a.mkdir()
    import shutil

    shutil.copy(good[0], a / "photo.jpg")
    shutil.copy(good[1], tmp_path / "noext")
    before = (a / "photo.jpg").read_bytes()
    cfg = predict.PredictConfig(model=model_dir, annotate=str(a))
    out, err, code = predict.run(cfg, [str(a / "photo.jpg"), str(tmp_path / "noext")])
    assert (a / "photo.jpg").read_bytes() == before
    assert sorted(os.listdir(a)) == ["noext.jpg", "photo-2.jpg", "photo.jpg"]
    assert out.count("\n") == 2 and code == 0, err


def test_given_mode_says_it_does_not_check_and_flags_what_is_no_face_crop(photos, tmp_path):
    # Hostile-input item 5: a 1x1 image or a landscape got an age without a word.
    from PIL import Image

    from age_tf.serve import predict

    model_dir, good, _, _ = photos
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    Image.new("RGB", (900, 300), (40, 90, 30)).save(tmp_path / "land.jpg")
    paths = [str(tmp_path / "dot.png"), str(tmp_path / "land.jpg"), good[0]]
    out, err, code = predict.run(predict.PredictConfig(model=model_dir, faces="given"), paths)
    assert predict.GIVEN_NOTE in err and code == 0
    assert "dot.png: warning: 1x1 px is too small to show a face" in err
    assert "land.jpg: warning: 900x300 px is not the shape of a face crop" in err
    assert good[0] + ": warning" not in err and out.count("\n") == 3


def test_the_image_signature_refuses_another_size(trained_run):
    # Hostile-input item 4: 256 px faces into a 32 px signature gave 53.5 years, not an error.
    import tensorflow as tf

    serve = tf.saved_model.load(os.path.join(trained_run[0], "export")).signatures["serving_default"]
    assert serve(images=tf.zeros([2, 32, 32, 3]))["age"].shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must be \[N, 32, 32, 3\]"):
        serve(images=tf.zeros([1, 64, 64, 3]))


def test_detect_mode_streams_each_photo_before_reading_the_next(photos, monkeypatch):
    # Hostile-input item 14: every photo was decoded before any face was searched and the
    # results printed only at the end (300 photos of 12 MP: killed past 10 GB, no line).
    from age_tf.serve import photos as photos_module
    from age_tf.serve import predict

    model_dir, good, text_file, _ = photos
    events, real_read = [], photos_module.read_photo

    def read(path, *args):
        events.append(("read", path))
        return real_read(path, *args)

    monkeypatch.setattr(photos_module, "read_photo", read)
    paths = [good[0], text_file, good[1], good[2]]
    out, err, code = predict.run(predict.PredictConfig(model=model_dir), paths,
                                 out=lambda t: events.append(("out", t)),
                                 err=lambda t: events.append(("err", t)))
    assert out == err == "" and code == 1  # streamed; the text file is an error
    kinds = [(kind, path if kind == "read" else path.split(":")[0].split(" face")[0])
             for kind, path in events if path]
    reads = [i for i, (k, _) in enumerate(kinds) if k == "read"]
    for photo, at in zip(paths, reads):  # each photo answered before the next is read
        answer = next(i for i, (k, p) in enumerate(kinds) if k != "read" and p == photo)
        assert at < answer < (reads[reads.index(at) + 1] if at != reads[-1] else len(kinds))


def test_thresholds_decide_each_face_with_the_error_they_promise(photos):
    model_dir, good, _, _ = photos
    r = _cli(f"--model={model_dir}", "--faces=given", "--thresholds=25,18", good[0], good[1])
    assert r.returncode == 0, r.stderr[-2000:]
    # Each threshold's cut stated once, with the error it promises; each face decided.
    assert r.stderr.count("decisions at 18: ") == 1 and "at most 5% of faces under 25" in r.stderr
    for line in r.stdout.strip().splitlines():
        assert sum(w in line for w in ("over 18", "under 18", "uncertain at 18")) == 1
        assert line.index("18") < line.index("25", line.index("years"))  # in threshold order
    # JSON and a bad threshold, in this process (the command's own function).
    from age_tf.serve import predict

    cfg = predict.PredictConfig(model=model_dir, faces="given", output="json",
                                thresholds=(18.0,), decision_error=0.1)
    out = json.loads(predict.run(cfg, [good[0]])[0])
    assert out["model"]["decisions"][0]["error"] == 0.1
    assert out["results"][0]["decisions"]["18"] in ("over", "under", "uncertain")
    # --decision_band: the cuts from the faces within 5 years of 18, and said so.
    banded = dataclasses.replace(cfg, decision_band=5.0, output="text")
    _, err, code = predict.run(banded, [good[0]])
    assert code == 0 and "of faces aged 13 to 18 (not 18) called over" in err
    out = json.loads(predict.run(dataclasses.replace(banded, output="json"), [good[0]])[0])
    assert out["model"]["decisions"][0]["band"] == 5.0
    with pytest.raises(ValueError, match="--thresholds"):
        predict.PredictConfig(model=model_dir, thresholds=("x",)).validate()


def test_decisions_are_calibrated_on_validation_faces_only(trained_run):
    """decisions.json holds the validation faces' labels and the model's predictions of
    them: no test image enters the cuts."""
    import keras
    import tensorflow as tf

    model_dir, data_dir = trained_run
    sample = json.load(open(os.path.join(model_dir, "decisions.json")))
    val, images_dir = prepared_lib.load_manifest(data_dir, "val")
    test, _ = prepared_lib.load_manifest(data_dir, "test")
    assert sample["faces"] == len(val) and not set(val["path"]) & set(test["path"])
    assert sample["ages"] == [round(float(a), 2) for a in val["age"]]
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    images = np.stack([pipeline.resize(pipeline.decode(tf.io.read_file(
        os.path.join(images_dir, p))), 32).numpy() for p in val["path"]]).astype("float32")
    low, high = json.load(open(os.path.join(model_dir, "intervals.json")))["age_range"]
    pred = np.clip(labels.to_years(np.asarray(model(images)).reshape(-1)), low, high)
    assert np.abs(np.asarray(sample["predicted"]) - pred).max() < 0.02


def test_a_card_without_decisions_says_what_to_do():
    from age_tf.serve.served_model import AgeModel

    model = AgeModel.__new__(AgeModel)
    model.card, model.path = {"intervals": None}, "old/export"
    with pytest.raises(ValueError, match="--thresholds: old/export has no decision"):
        model.decision_cuts([18])
