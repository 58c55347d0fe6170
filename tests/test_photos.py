"""Tests for age_tf.serve.photos and age-tf-predict on ordinary photos: detection, crop, age."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from matplotlib import cbook
from PIL import Image

from age_tf.data import detect, pipeline, sources
from age_tf.serve import photos
from age_tf.synthetic import synth

pytestmark = pytest.mark.integration  # trains models or runs the commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def grace():
    """matplotlib's bundled real photo: Grace Hopper, one face, 512 x 600."""
    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))


@pytest.fixture(scope="module")
def detector():
    return photos.FaceDetector()


@pytest.fixture(scope="module")
def model(trained_run):
    return photos.AgeModel(trained_run[0])


def test_one_face_in_a_real_photo_plausibly_placed(grace, detector):
    faces = detector(grace)
    assert len(faces) == 1
    (x1, y1, x2, y2), conf, marks = faces[0]
    assert conf > 0.95
    # The face is in the upper middle of the portrait, about a third of its width.
    assert 180 < (x1 + x2) / 2 < 340 and 140 < (y1 + y2) / 2 < 300
    assert 110 < x2 - x1 < 260 and 110 < y2 - y1 < 300
    ex = (marks["left_eye"][0] + marks["right_eye"][0]) / 2
    assert x1 < ex < x2 and y1 < marks["left_eye"][1] < marks["mouth_left"][1] < y2


def test_several_faces_side_by_side_all_found_left_to_right(grace, detector):
    small = np.asarray(Image.fromarray(grace).resize((384, 450)))
    canvas = np.full((600, 512 * 2 + 384, 3), 128, np.uint8)
    canvas[:, :512], canvas[:, 512:1024] = grace, grace[:, ::-1]
    canvas[75:525, 1024:] = small
    faces = detector(canvas)
    assert len(faces) == 3
    centers = [(b[0] + b[2]) / 2 for b, _, _ in faces]
    assert centers == sorted(centers) and centers[0] < 512 < centers[1] < 1024 < centers[2]


def test_a_crowd_is_searched_in_tiles_and_every_face_found_once(grace, detector):
    # 15 faces on a 1280 x 900 copy: over twice the tile, so it is searched in overlapping
    # tiles (MTCNN alone on a crowd of 480 took 10 GB); each face found once, in its cell.
    face = np.asarray(Image.fromarray(grace).resize((256, 300)))
    canvas = np.concatenate([np.concatenate([face] * 5, axis=1)] * 3, axis=0)
    assert max(canvas.shape[:2]) > 2 * detect.DETECT_TILE
    faces = detector(canvas)
    cells = sorted((int((b[0] + b[2]) / 2 // 256), int((b[1] + b[3]) / 2 // 300))
                   for b, _, _ in faces)
    assert cells == sorted((x, y) for x in range(5) for y in range(3))


def test_no_face_is_an_empty_list(detector):
    sky = np.tile(np.linspace(80, 220, 400).astype(np.uint8)[:, None, None], (1, 600, 3))
    assert detector(sky) == []


def test_crop_widens_the_box_by_the_margin():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 255  # a 20 px "face"; box (40, 40, 59, 59) in 0-based pixels
    crop = photos.crop_face(image, (40, 40, 59, 59), margin=0.5, size=38)
    # Widened by half the box on each side: the face fills the middle half of the crop.
    bright = np.argwhere(crop[..., 0] > 128)
    assert abs(bright.min() - 9.5) <= 1.5 and abs(bright.max() - 28.5) <= 1.5


def test_the_faces_of_a_photo_go_through_the_model_a_batch_at_a_time(grace, detector, model,
                                                                     monkeypatch):
    # Photo by photo, batch_size crops at a time: memory holds one photo's batch of crops,
    # whatever the number of photos or faces (hostile-input items 14 and 15).
    calls = []
    real = model._call

    def spy(images):
        calls.append(int(images.shape[0]))
        return real(images)

    monkeypatch.setattr(model, "_call", spy)
    pair = np.concatenate([grace, grace[:, ::-1]], axis=1)
    faces = photos.estimate_many([("a", grace), ("b", pair)], model, detector)
    assert [f.file for f in faces] == ["a", "b", "b"] and calls == [1, 2]
    calls.clear()
    crowd = np.concatenate([pair, pair], axis=1)  # four faces, batches of three
    assert len(photos.estimate_photo("c", crowd, model, detector, batch_size=3)) == 4
    assert calls == [3, 1]
    assert all(np.isfinite(f.age) for f in faces)


def test_estimate_crops_with_the_cards_margin_and_gives_the_interval(grace, model, monkeypatch):
    # The tiny run trained on synthetic crops, whose release records their framing.
    assert model.card["preprocessing"]["crop_margin"] == synth.CROP_MARGIN == model.crop_margin
    faces = photos.estimate(grace, model)
    crop = photos.crop_face(grace, faces[0].box, synth.CROP_MARGIN, model.image_size)
    out = model(crop[None].astype(np.float32))
    assert faces[0].age == pytest.approx(float(out["age"][0]), abs=1e-4)
    assert faces[0].age_low == pytest.approx(float(out["age_low"][0]), abs=1e-4)
    assert faces[0].age_low <= faces[0].age <= faces[0].age_high
    margins = []
    real_crop = photos.crop_face
    monkeypatch.setattr(photos, "crop_face", lambda image, box, margin, size: (
        margins.append(margin) or real_crop(image, box, margin, size)))
    photos.estimate(grace, model)
    photos.estimate(grace, model, margin=sources.RELEASE_MARGIN)  # an explicit margin wins
    assert margins == [synth.CROP_MARGIN, sources.RELEASE_MARGIN]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "age_tf.cli.predict", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_photos_no_face_broken_files_annotated(trained_run, grace, tmp_path):
    Image.fromarray(grace).save(tmp_path / "grace.jpg")
    sky = np.tile(np.linspace(80, 220, 300).astype(np.uint8)[:, None, None], (1, 400, 3))
    Image.fromarray(sky).save(tmp_path / "sky.png")
    (tmp_path / "notes.jpg").write_text("not an image")
    good = (tmp_path / "grace.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[:300])
    files = [str(tmp_path / n) for n in ("grace.jpg", "sky.png", "notes.jpg", "cut.jpg", "gone.jpg")]
    r = _cli(f"--model={trained_run[0]}", "--output=json", f"--annotate={tmp_path / 'out'}", *files)
    assert r.returncode == 1  # some files could not be read; the others were still predicted
    out = json.loads(r.stdout)
    rows = {row["file"].split("/")[-1]: row for row in out["faces"]}
    assert out["model"]["synthetic"] is True and out["model"]["crop_margin"] == synth.CROP_MARGIN
    assert rows["grace.jpg"]["age_low"] <= rows["grace.jpg"]["age"] <= rows["grace.jpg"]["age_high"]
    assert rows["grace.jpg"]["face"] == 0 and rows["grace.jpg"]["confidence"] > 0.95
    assert set(rows["grace.jpg"]["landmarks"]) >= {"left_eye", "right_eye", "nose"}
    assert rows["sky.png"]["note"] == "no face found"  # reported, not an error
    assert rows["gone.jpg"]["note"] == "error: file not found"
    for bad in ("notes.jpg", "cut.jpg"):
        assert rows[bad]["note"].startswith("error:"), rows[bad]
    assert "notes.jpg: error: not a JPEG or PNG image" in r.stderr
    drawn = np.asarray(Image.open(tmp_path / "out" / "grace.jpg"))
    assert drawn.shape == grace.shape and (np.abs(drawn.astype(int) - grace).max() > 100)
    text = _cli(f"--model={trained_run[0]}", str(tmp_path / "grace.jpg"), str(tmp_path / "sky.png"))
    assert text.returncode == 0, text.stderr[-2000:]
    assert "grace.jpg face 0 at (" in text.stdout and "sky.png: no face found" in text.stdout


def test_cli_text_gives_the_interval_and_warns_once_of_synthetic_training(trained_run, grace,
                                                                          tmp_path):
    Image.fromarray(grace).save(tmp_path / "grace.jpg")
    r = _cli(f"--model={trained_run[0]}", str(tmp_path / "grace.jpg"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "% interval " in r.stdout and " years (" in r.stdout
    assert r.stderr.count("trained on synthetic faces: ages of real photos are not meaningful") == 1


def test_a_crop_cut_from_its_region_equals_the_crop_from_the_whole_photo(grace):
    # Hostile-input item 13: crops no longer copy the whole photo to float; same pixels.
    rng = np.random.default_rng(0)
    h, w = grace.shape[:2]
    for box in [(182, 116, 349, 331), (0, 0, 80, 90), (430, 500, 511, 599), (-20, 300, 60, 420)]:
        margin = float(rng.uniform(0.2, 0.6))
        x1, y1, x2, y2 = box
        whole = pipeline.resize(tf.constant(grace), 64,
                                tf.constant([x1 + 1, y1 + 1, x2 + 1, y2 + 1], tf.float32),
                                margin).numpy()
        region = photos.crop_face(grace, box, margin, 64)
        assert np.abs(region.astype(int) - whole).max() <= 1, box


def test_downscaled_is_the_mean_of_whole_blocks():
    image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    small, scale = detect.downscaled(image, 20, strip_rows=3)
    assert scale == 1 / 3 and small.shape == (13, 20, 3)
    expect = image[:39, :60].astype(float).reshape(13, 3, 20, 3, 3).mean(axis=(1, 3)).round()
    assert np.array_equal(small, expect.astype(np.uint8))
    assert detect.downscaled(image, 60)[0] is image  # small enough: the photo itself


def test_faces_are_found_on_a_small_copy_and_given_in_the_photos_pixels(grace, detector, monkeypatch):
    seen = []
    small = photos.FaceDetector(detect_side=256)
    real = small._mtcnn.detect_faces
    monkeypatch.setattr(small._mtcnn, "detect_faces",
                        lambda image, **kw: seen.append(image.shape) or real(image, **kw))
    (box, _, marks), = small(grace)
    (full_box, _, full_marks), = detector(grace)
    assert max(seen[0][:2]) <= 256  # the detector never saw the full photo
    size = full_box[2] - full_box[0]
    assert np.abs(np.subtract(box, full_box)).max() < 0.1 * size
    assert abs(marks["nose"][0] - full_marks["nose"][0]) < 0.1 * size


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds almost nothing (a decompression bomb's
    header)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_a_photo_over_the_pixel_budget_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000))
    with pytest.raises(ValueError, match=r"30000x30000 is 900 megapixels, over --max_megapixels=180"):
        photos.read_photo(str(bomb))
    with pytest.raises(ValueError, match="--max_megapixels=0.25"):  # 512 x 600 = 0.31 MP
        photos.read_photo(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), 0.25)


def test_damaged_and_foreign_files_are_told_apart(tmp_path):
    data = open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 3])
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="a damaged JPEG file"):
        photos.read_photo(str(tmp_path / "cut.jpg"))
    with pytest.raises(ValueError, match="not a JPEG or PNG image"):
        photos.read_photo(str(tmp_path / "text.jpg"))


def test_a_model_trained_aligned_gets_the_aligned_crop_of_mtcnns_landmarks(grace, model,
                                                                           detector):
    """The card's framing decides: 'aligned' -> the benchmark's square of the face's
    landmarks (data/align.py, as in training), else the box with the card's margin."""
    from age_tf.data import align
    from age_tf.export_format import ALIGNED

    faces = photos.find_faces("grace", grace, detector)
    assert not model.aligned
    boxed = photos.face_crops(grace, faces, model, model.crop_margin)
    aligned_model = photos.AgeModel.__new__(photos.AgeModel)
    aligned_model.card = {"preprocessing": {"framing": ALIGNED}}
    aligned_model.image_size = model.image_size
    assert aligned_model.aligned
    crops = photos.face_crops(grace, faces, aligned_model, 0.4)
    expected = align.crop(grace, align.square_from_landmarks(faces[0].landmarks),
                          model.image_size).numpy()
    np.testing.assert_array_equal(crops[0], expected.astype(np.float32))
    assert np.abs(crops[0] - boxed[0]).mean() > 10  # another framing of the same face
