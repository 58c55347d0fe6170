"""Tests for age_tf.train.feature_cache: features of a frozen backbone, kept and reused."""

import functools
import io
import os

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from age_tf.data import pipeline
from age_tf.train import feature_cache, models

S = 32


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Eight small distinct JPEGs whose left and right halves differ (a flip changes them)."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        arr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        arr[:, :20] //= 3
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
        (root / f"f{i}.jpg").write_bytes(buf.getvalue())
        rows.append((f"f{i}.jpg", 20 + i))
    return pd.DataFrame(rows, columns=["path", "age"]), str(root)


def _close(a, b) -> bool:
    """Equal up to the float rounding of other batch compositions (relative to the whole)."""
    return np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)


@functools.cache
def _extractor(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return models.feature_extractor(models.build_model(models.ModelConfig(
        image_size=S, weights="none", tune="head", head_units=(8,))))


def _counting(monkeypatch) -> list[int]:
    """Rows run through the backbone, per call."""
    calls, real = [], feature_cache.extract_features

    def counted(extractor, manifest, *args, **kwargs):
        calls.append(len(manifest))
        return real(extractor, manifest, *args, **kwargs)

    monkeypatch.setattr(feature_cache, "extract_features", counted)
    return calls


def test_stored_features_equal_a_fresh_pass_and_only_new_images_run(faces, tmp_path, monkeypatch):
    df, root = faces
    cfg = pipeline.PipelineConfig(batch_size=3)
    extractor = _extractor(0)
    direct = feature_cache.extract_features(extractor, df, root, cfg, S, flips=(False, True))
    calls = _counting(monkeypatch)
    store = feature_cache.FeatureStore(str(tmp_path / "store"))

    first = store.features(extractor, df.iloc[:5], root, cfg, S, mirrored=False)
    assert _close(first, direct[:5, 0])
    # A later reader of more images (in another order) runs only the ones not stored yet.
    order = df.iloc[[7, 2, 5, 0, 6]]
    again = store.features(extractor, order, root, cfg, S, mirrored=False)
    assert _close(again, direct[[7, 2, 5, 0, 6], 0])
    assert calls == [5, 3]
    # Everything stored: no backbone pass, whichever batch size reads it.
    store.features(extractor, df, root, pipeline.PipelineConfig(batch_size=8), S, mirrored=False)
    assert calls == [5, 3]
    # Mirror images are their own entry.
    mirrored = store.features(extractor, df, root, cfg, S, mirrored=True)
    assert _close(mirrored, direct[:, 1])
    assert calls == [5, 3, 8] and not _close(mirrored, direct[:, 0])


def test_other_weights_or_framing_never_read_stored_features(faces, tmp_path, monkeypatch):
    df, root = faces
    cfg = pipeline.PipelineConfig(batch_size=4)
    store = feature_cache.FeatureStore(str(tmp_path / "store"))
    a = store.features(_extractor(0), df, root, cfg, S, mirrored=False)
    calls = _counting(monkeypatch)
    b = store.features(_extractor(1), df, root, cfg, S, mirrored=False)
    assert calls == [8] and not _close(a, b)
    store.features(_extractor(0), df, root, pipeline.PipelineConfig(batch_size=4, face_margin=0.1),
                   S, mirrored=False)
    assert calls == [8, 8]
    assert len(os.listdir(tmp_path / "store")) == 3


def test_a_changed_image_or_a_damaged_store_file_is_computed_again(faces, tmp_path, monkeypatch):
    df, root = faces
    folder = tmp_path / "images"
    folder.mkdir()
    for p in df["path"]:
        (folder / p).write_bytes(open(os.path.join(root, p), "rb").read())
    cfg = pipeline.PipelineConfig(batch_size=4)
    store = feature_cache.FeatureStore(str(tmp_path / "store"))
    before = store.features(_extractor(0), df, str(folder), cfg, S, mirrored=False)
    calls = _counting(monkeypatch)
    # Another picture under the same name (a re-made data folder): its row runs again.
    other = open(os.path.join(root, df["path"].iloc[1]), "rb").read()
    (folder / df["path"].iloc[0]).write_bytes(other)
    after = store.features(_extractor(0), df, str(folder), cfg, S, mirrored=False)
    assert calls == [1]
    assert _close(after[0], before[1]) and _close(after[1:], before[1:])
    # A store file that cannot be read is a cache miss, not a crash.
    (stored,) = os.listdir(tmp_path / "store")
    (tmp_path / "store" / stored).write_bytes(b"not a zip")
    again = store.features(_extractor(0), df, str(folder), cfg, S, mirrored=False)
    assert calls == [1, 8] and _close(again, after)


def test_a_store_folder_that_cannot_be_written_is_refused_by_flag(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="--feature_store=.*a_file is a file"):
        feature_cache.FeatureStore(str(tmp_path / "a_file"))
