"""Tests for age_tf.data.images: each kind of broken or unusual file."""

import io

import numpy as np
import pytest
from PIL import Image

from age_tf.data import images


def _save(path, img, fmt="JPEG", **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.fixture
def face():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def test_plain_jpeg_ok(tmp_path, face):
    info = images.check_image(_save(tmp_path / "a.jpg", face), 32)
    assert info.ok and (info.width, info.height) == (64, 64)
    assert info.image_format == "jpeg" and info.conversion == ""
    assert len(info.sha256) == 64 and info.thumb.shape == (images.THUMB_SIZE**2,)


@pytest.mark.parametrize(
    "mode, fmt, conversion",
    [("L", "JPEG", "grayscale"), ("CMYK", "JPEG", "cmyk"), ("RGB", "PNG", "png-bytes")],
)
def test_usable_after_conversion_listed(tmp_path, face, mode, fmt, conversion):
    info = images.check_image(_save(tmp_path / "a.jpg", face.convert(mode), fmt), 32)
    assert info.ok
    assert info.conversion == conversion


def test_missing(tmp_path):
    info = images.check_image(str(tmp_path / "none.jpg"), 32)
    assert not info.ok and info.reason == "missing file"


def test_truncated(tmp_path, face):
    p = _save(tmp_path / "a.jpg", face, quality=95)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    info = images.check_image(p, 32)
    assert not info.ok and info.reason == "truncated file"


def test_placeholder_too_small(tmp_path):
    info = images.check_image(_save(tmp_path / "a.jpg", Image.new("RGB", (1, 1))), 32)
    assert not info.ok and info.reason.startswith("too small (1x1")


def test_not_an_image(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"<html>404</html>")
    info = images.check_image(str(p), 32)
    assert not info.ok and info.reason.startswith("does not decode")


def test_empty_file(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"")
    assert images.check_image(str(p), 32).reason == "empty file"


def test_unsupported_format(tmp_path, face):
    info = images.check_image(_save(tmp_path / "a.jpg", face, "BMP"), 32)
    assert not info.ok and info.reason == "unsupported format (bmp)"


def test_dhash_survives_reencode_and_resize(tmp_path, face):
    face = face.resize((16, 16)).resize((128, 128), Image.Resampling.BICUBIC)  # smooth content
    a = images.check_image(_save(tmp_path / "a.jpg", face, quality=95), 32)
    b = images.check_image(_save(tmp_path / "b.jpg", face.resize((90, 90)), quality=60), 32)
    assert bin(a.dhash ^ b.dhash).count("1") <= 8


def test_parallel_matches_serial(tmp_path, face, monkeypatch):
    paths = [_save(tmp_path / f"{i}.jpg", face.rotate(i * 10)) for i in range(6)]
    paths.append(str(tmp_path / "missing.jpg"))
    serial = images.check_images(paths, 32, workers=1)
    monkeypatch.setattr(images, "PARALLEL_MIN_IMAGES", 0)
    parallel = images.check_images(paths, 32, workers=2, chunk_size=2)
    assert [s.sha256 for s in serial] == [p.sha256 for p in parallel]
    assert [s.ok for s in parallel] == [True] * 6 + [False]
