"""Tests for age_tf.data.pipeline: decode, resize, flip, caching, skipping broken files."""

import dataclasses
import io
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from age_tf import labels
from age_tf.data import pipeline
from age_tf.data import prepared as prepared_lib

S = 32  # tiny network input for tests


def _img(path, arr, fmt="JPEG", mode=None):
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95)
    path.write_bytes(buf.getvalue())
    return path.name


def _half(h=40, w=60):
    """Left half black, right half white: a flip is obvious."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, w // 2:] = 255
    return arr


@pytest.fixture
def folder(tmp_path):
    rows = []
    for i in range(6):
        rows.append((_img(tmp_path / f"ok{i}.jpg", _half()), 20 + i))
    rows.append((_img(tmp_path / "gray.jpg", _half(), mode="L"), 50))
    rows.append((_img(tmp_path / "png.jpg", _half(), fmt="PNG"), 60))
    df = pd.DataFrame(rows, columns=["path", "age"])
    for c, v in zip(["face_x1", "face_y1", "face_x2", "face_y2"], [1, 1, 60, 40]):
        df[c] = float(v)
    return df, str(tmp_path)


def _ds(df, root, cfg, training, size=S, **kw):
    return pipeline.InputPipeline(df, root, cfg, size, training=training, **kw).dataset()


def _remove_images(df, root):
    """Deletes the manifest's files: what is served afterwards cannot have been read."""
    for p in set(df["path"]):
        os.remove(os.path.join(root, p))


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_shapes_dtypes_ranges_labels(folder):
    df, root = folder
    cfg = pipeline.PipelineConfig(batch_size=4)
    x, y = _collect(_ds(df, root, cfg, training=False))
    assert x.shape == (8, S, S, 3) and x.dtype == np.uint8
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 200
    np.testing.assert_allclose(y, labels.to_label(df["age"].to_numpy(np.float32)))
    assert y.dtype == np.float32


def test_grayscale_and_png_become_rgb(folder):
    df, root = folder
    for name in ("gray.jpg", "png.jpg"):
        img = pipeline.decode(tf.io.read_file(os.path.join(root, name)))
        assert img.shape[-1] == 3 and img.dtype == tf.uint8
        # Left black, right white survive decoding.
        assert img.numpy()[:, :20].mean() < 30 and img.numpy()[:, 40:].mean() > 220


def test_resize_eager_equals_in_dataset_map(folder):
    df, root = folder
    data = tf.io.read_file(os.path.join(root, df["path"][0]))
    eager = pipeline.resize(pipeline.decode(data), S)
    mapped = next(iter(tf.data.Dataset.from_tensors(data).map(
        lambda d: pipeline.resize(pipeline.decode(d), S))))
    np.testing.assert_array_equal(eager.numpy(), mapped.numpy())
    assert eager.shape == (S, S, 3) and eager.dtype == tf.uint8


def test_flip_eager_equals_in_dataset_map():
    img = tf.constant(_half(8, 8))
    for i in range(6):
        seed = tf.constant([1, i], tf.int64)
        eager = pipeline.random_flip(img, seed)
        mapped = next(iter(tf.data.Dataset.from_tensors((img, seed)).map(pipeline.random_flip)))
        np.testing.assert_array_equal(eager.numpy(), mapped.numpy())


def test_crop_face_box_eager_and_mapped():
    arr = np.zeros((100, 100, 3), np.uint8)
    arr[20:60, 30:70] = 200  # the "face"
    box = tf.constant([31.0, 21.0, 70.0, 60.0])  # 1-based x1, y1, x2, y2
    eager = pipeline.resize(tf.constant(arr), 20, box, margin=0.0).numpy()
    assert eager.min() >= 190  # only face pixels
    mapped = next(iter(tf.data.Dataset.from_tensors(tf.constant(arr)).map(
        lambda a: pipeline.resize(a, 20, box, margin=0.0)))).numpy()
    np.testing.assert_array_equal(eager, mapped)
    wide = pipeline.resize(tf.constant(arr), 20, box, margin=0.25).numpy()
    assert wide[0, 0].max() == 0 and wide[10, 10].min() >= 190  # border now included


def _flipped(x):
    return x[:, :, : x.shape[2] // 2].mean(axis=(1, 2, 3)) > 128


def test_flip_about_half_on_train_never_on_eval(tmp_path):
    name = _img(tmp_path / "a.jpg", _half(16, 16))
    df = pd.DataFrame({"path": [name] * 400, "age": [30] * 400})
    cfg = pipeline.PipelineConfig(batch_size=50, cache="memory")
    train = _ds(df, str(tmp_path), cfg, training=True, size=16, seed=3)
    x, _ = _collect(train)
    share = _flipped(x).mean()
    assert 0.4 < share < 0.6  # binomial n=400: sd 0.025
    x2, _ = _collect(train)
    assert (_flipped(x2) != _flipped(x)).any()  # new flips every epoch
    for ds in (_ds(df, str(tmp_path), cfg, training=False, size=16),):
        xe, _ = _collect(ds)
        assert not _flipped(xe).any()


def test_corrupt_and_missing_files_skipped(folder, tmp_path):
    df, root = folder
    good = open(os.path.join(root, df["path"][0]), "rb").read()
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 3])
    bad = pd.DataFrame({"path": [str(tmp_path / "trunc.jpg"), str(tmp_path / "gone.jpg")],
                        "age": [1, 2]})
    df = pd.concat([df[["path", "age"]], bad], ignore_index=True)
    cfg = pipeline.PipelineConfig(batch_size=3)
    pipe = pipeline.InputPipeline(df, root, cfg, S, training=False)
    assert len(pipe) == 9  # the missing file is left out before any epoch
    x, y = _collect(pipe.dataset())
    assert len(x) == 8  # the epoch goes on past the broken file, dropping only it
    np.testing.assert_array_equal(np.round(y * 100), df["age"][:8])


def test_cache_memory_and_disk(folder, tmp_path):
    df, root = folder
    want, _ = _collect(_ds(df, root, pipeline.PipelineConfig(batch_size=4), training=False))
    pipes = [pipeline.InputPipeline(df, root, pipeline.PipelineConfig(batch_size=4, cache=c), S,
                                    training=False) for c in ("memory", str(tmp_path / "cache"))]
    _remove_images(df, root)  # both caches were built when made: no file is read again
    for pipe in pipes:
        for _ in range(2):
            np.testing.assert_array_equal(_collect(pipe.dataset())[0], want)
    assert os.listdir(tmp_path / "cache")


def test_deterministic_mode_reproducible(folder):
    df, root = folder
    cfg = pipeline.PipelineConfig(batch_size=2, deterministic=True)
    a = _collect(_ds(df, root, cfg, training=True, seed=5))
    b = _collect(_ds(df, root, cfg, training=True, seed=5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_sharding_by_input_context(folder):
    df, root = folder
    cfg = pipeline.PipelineConfig(batch_size=4)
    seen = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                         num_replicas_in_sync=2)
        pipe = pipeline.InputPipeline(df, root, cfg, S, training=False)
        x, y = _collect(pipe.dataset(input_context=ctx))
        seen.append(set(np.round(y * 100).astype(int)))
        assert len(y) == 4  # half of the 8 images each, none twice
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 8


def test_load_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.csv not found: --data_dir must be"):
        prepared_lib.load_manifest(str(tmp_path), "train")


def test_epoch_seeded_order_is_reproducible_and_varies_by_epoch(folder):
    df, root = folder
    df = pd.concat([df] * 4, ignore_index=True)
    df["age"] = np.arange(len(df))
    for cache in ("", "memory"):
        cfg = pipeline.PipelineConfig(batch_size=4, cache=cache, deterministic=True)
        pipe = pipeline.InputPipeline(df, root, cfg, S, training=True)
        e0a = _collect(pipe.dataset(epoch=0))
        e0b = _collect(pipeline.InputPipeline(df, root, cfg, S, training=True).dataset(epoch=0))
        e1 = _collect(pipe.dataset(epoch=1))
        np.testing.assert_array_equal(e0a[1], e0b[1])  # same epoch, new process: same order
        np.testing.assert_array_equal(e0a[0], e0b[0])  # ...and the same flips
        assert not np.array_equal(e0a[1], e1[1])


def test_cache_shared_across_epoch_datasets(folder):
    df, root = folder
    cfg = pipeline.PipelineConfig(batch_size=2, cache="memory")
    pipe = pipeline.InputPipeline(df, root, cfg, S, training=True)
    _remove_images(df, root)  # decoded once, when the pipeline was made
    for epoch in range(3):
        assert len(_collect(pipe.dataset(epoch=epoch))[0]) == len(df) // 2 * 2


def test_disk_cache_is_named_by_content(tmp_path):
    """Two manifests, one cache folder: each reads its own images (the old per-process
    names let validation read the training cache); a changed file or size is a new entry."""
    rng = np.random.default_rng(0)
    names = [_img(tmp_path / f"f{i}.jpg", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
             for i in range(6)]
    a = pd.DataFrame({"path": names[:3], "age": [1, 2, 3]})
    b = pd.DataFrame({"path": names[3:], "age": [4, 5, 6]})
    cache = str(tmp_path / "cache")
    plain = pipeline.PipelineConfig(batch_size=3)
    cached = pipeline.PipelineConfig(batch_size=3, cache=cache)
    for df in (a, b):
        got, _ = _collect(_ds(df, str(tmp_path), cached, training=False))
        want, _ = _collect(_ds(df, str(tmp_path), plain, training=False))
        np.testing.assert_array_equal(got, want)
    assert len([d for d in os.listdir(cache) if not d.startswith(".")]) == 2
    # Rewrite a file (new bytes, new time): the old entry is not read.
    _img(tmp_path / names[0], 255 - rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    os.utime(tmp_path / names[0], ns=(1, 10**18))
    got, _ = _collect(_ds(a, str(tmp_path), cached, training=False))
    want, _ = _collect(_ds(a, str(tmp_path), plain, training=False))
    np.testing.assert_array_equal(got, want)
    boxed = a.assign(face_x1=1.0, face_y1=1.0, face_x2=15.0, face_y2=15.0)
    keys = {pipeline.cache_key(boxed, str(tmp_path), c, size) for c, size in (
        (cached, S), (cached, S + 1),
        (dataclasses.replace(cached, crop_faces=True), S),
        (dataclasses.replace(cached, crop_faces=True, face_margin=0.2), S))}
    assert len(keys) == 4  # size, crop and margin each name another entry


@pytest.mark.parametrize("cache", ["", "memory", "disk"])
def test_each_epoch_is_a_fresh_permutation_of_the_whole_split(tmp_path, cache):
    """With or without a cache: the old cached pipeline fixed one order and only mixed it in
    a 1,024-image buffer, so epochs of a larger split saw nearly the same batches."""
    name = _img(tmp_path / "a.jpg", _half(8, 8))
    n = 3000
    df = pd.DataFrame({"path": [name] * n, "age": np.arange(n)})
    cfg = pipeline.PipelineConfig(batch_size=100,
                                  cache=str(tmp_path / "c") if cache == "disk" else cache)
    pipe = pipeline.InputPipeline(df, str(tmp_path), cfg, 8, training=True, seed=1)
    orders = [np.round(_collect(pipe.dataset(epoch=e))[1] * labels.AGE_SCALE).astype(int)
              for e in range(2)]
    for order in orders:
        assert sorted(order) == list(range(n))  # every image once
    # Position of each image in epoch 0 vs epoch 1: independent permutations correlate ~0
    # (sd ~0.018 for n=3000); the old cache (one fixed order mixed in a 1,024-image buffer)
    # measured 0.37.
    pos = [np.argsort(o) for o in orders]
    assert abs(np.corrcoef(pos[0], pos[1])[0, 1]) < 0.1
    assert orders[1][: n // 4].max() > 0.9 * n  # the epoch's start draws from the whole split


def test_memory_cache_that_would_not_fit_is_refused_before_decoding(folder, monkeypatch):
    df, root = folder
    need = len(df) * S * S * 3
    assert pipeline.check_memory_cache_fits(len(df), S, available=10 * need) == need
    with pytest.raises(MemoryError, match=r"--cache=memory: .* images at .* Use --cache=DIR"):
        pipeline.check_memory_cache_fits(150_000, 256, available=16 * 2**30)  # 27.5 GiB
    # The pipeline asks before it decodes anything.
    monkeypatch.setattr(pipeline, "available_memory", lambda: need)
    real_decode_all = pipeline._decode_all

    def no_decoding(*args):
        raise AssertionError("decoded before the memory check")

    monkeypatch.setattr(pipeline, "_decode_all", no_decoding)
    with pytest.raises(MemoryError, match="Use --cache=DIR"):
        pipeline.InputPipeline(df, root, pipeline.PipelineConfig(batch_size=2, cache="memory"), S,
                               training=True)
    # And a disk cache is not limited by memory: built, it feeds every image.
    monkeypatch.setattr(pipeline, "_decode_all", real_decode_all)
    on_disk = pipeline.InputPipeline(df, root, pipeline.PipelineConfig(
        batch_size=2, cache=str(os.path.join(root, "c"))), S, training=False)
    assert len(_collect(on_disk.dataset())[1]) == len(df)


def test_available_memory_reads_the_system():
    avail = pipeline.available_memory()
    assert avail is None or 2**20 < avail < 2**50


def test_map_images_traces_once_per_call_and_never_warns_of_retracing(tmp_path, caplog):
    # The demo printed TensorFlow's "triggered tf.function retracing" warning: each call
    # traced its lambda again for the last, smaller batch, and the calls' traces were all
    # counted as one function's.
    from PIL import Image

    for i in range(40):
        Image.fromarray(np.full((20, 20, 3), i * 5, np.uint8)).save(tmp_path / f"{i}.jpg")
    manifest = pd.DataFrame({"path": [f"{i}.jpg" for i in range(40)], "age": 30.0})
    traces = []

    def fn(x):
        traces.append(x.shape[0])  # runs once per trace
        return tf.reduce_mean(x, axis=[1, 2, 3])

    cfg = pipeline.PipelineConfig(batch_size=16)  # 16 + 16 + 8: a smaller last batch
    with caplog.at_level("WARNING"):
        for _ in range(8):
            out = pipeline.map_images(fn, manifest, str(tmp_path), cfg, 32, "testing")
    assert len(traces) == 8  # one trace per call, the batch size left open
    assert np.allclose(out, np.arange(40) * 5, atol=1.5)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    images = pipeline.map_images(None, manifest, str(tmp_path), cfg, 32)  # the images themselves
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.float32


def test_crop_flip_draws_a_square_of_80_to_100_percent_and_is_reproducible(tmp_path):
    """--augment=crop_flip: each training image is a random square of 80-100% of its area,
    resized back (so a centred white dot grows by up to 1/sqrt(0.8)), mirrored half the
    time; the same seed and epoch draw the same crops."""
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[24:40, 24:40] = 255
    name = _img(tmp_path / "dot.png", arr, fmt="PNG")
    df = pd.DataFrame({"path": [name] * 64, "age": [30] * 64})
    cfg = pipeline.PipelineConfig(batch_size=16, cache="memory", augment="crop_flip")
    make = lambda: pipeline.InputPipeline(df, str(tmp_path), cfg, 64, training=True,  # noqa: E731
                                          seed=1).dataset(epoch=0)
    x, _ = _collect(make())
    area = (x[..., 0] > 127).sum(axis=(1, 2)) / 256.0  # the dot's area against the original
    assert area.min() >= 0.95 and area.max() <= 1 / 0.8 + 0.1 and area.std() > 0.02
    np.testing.assert_array_equal(_collect(make())[0], x)
    plain = pipeline.PipelineConfig(batch_size=16, cache="memory", augment="none")
    xn, _ = _collect(pipeline.InputPipeline(df, str(tmp_path), plain, 64, training=True,
                                            seed=1).dataset(epoch=0))
    assert (xn == arr).all()  # --augment=none: the images as they are


def test_crop_flip_is_refused_on_cached_features(folder):
    df, root = folder
    cfg = pipeline.PipelineConfig(batch_size=4, augment="crop_flip")
    feats = np.zeros((len(df), 2, 8), np.float32)
    with pytest.raises(ValueError, match="--nofeature_cache"):
        pipeline.InputPipeline(df, root, cfg, S, training=True, features=feats).dataset()


def test_align_crops_by_the_manifest_square_and_names_rows_without_one(folder, tmp_path):
    from age_tf.data import align

    arr = np.zeros((80, 80, 3), np.uint8)
    arr[10:30, 50:70] = 255  # a white square, top right
    name = _img(tmp_path / "sq.png", arr, fmt="PNG")
    corners = np.array([[50, 10], [69, 10], [69, 29], [50, 29]], float)
    df = pd.DataFrame({"path": [name], "age": [30], "aligned_bbox": [align.corners_text(corners)]})
    cfg = pipeline.PipelineConfig(batch_size=1, align=True)
    x, _ = _collect(_ds(df, str(tmp_path), cfg, training=False, size=20))
    assert x.min() >= 250  # only the square
    df.loc[0, "aligned_bbox"] = ""
    with pytest.raises(ValueError, match="--align: 1 of 1 rows have no aligned square"):
        _ds(df, str(tmp_path), cfg, training=False, size=20)
    with pytest.raises(ValueError, match="two framings of the face"):
        pipeline.PipelineConfig(align=True, crop_faces=True).validate()
