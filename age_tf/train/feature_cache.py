"""Head-mode training from cached backbone features.

A frozen backbone computes the same features every epoch, so they are computed once per
image, as stored and mirrored, and the head trains on rows of that table: the same batches
and flip draws as the image pipeline (pipeline.InputPipeline serves both), so the same final
weights up to float rounding (convolutions over differently composed batches may round
differently), at a fraction of the time per epoch. A FeatureStore keeps them on disk for
whatever reads the same images through the same frozen backbone later (the audit, cleaning,
other head runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf import fileio
from age_tf.data import images, pipeline
from age_tf.train import models


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal across workers when they agree exactly."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()[:16]


class FeatureStore:
    """Backbone features on disk, one file per (backbone weights, images folder, input size,
    framing, flip), rows by image path: whatever reads the same images through the same
    frozen backbone reads them from here instead of running it again (the experiment's
    audit, cleaning and Table 3 retrains read what its audited head-only run computed).
    Rows not in the file yet are computed and added.
    """

    def __init__(self, folder: str):
        """Raises ValueError naming --feature_store when the folder cannot be written (before
        any feature is computed)."""
        fileio.check_writable_dir(folder, "feature_store")
        self.folder = folder

    def _file(self, extractor: keras.Model, images_dir: str, pcfg: pipeline.PipelineConfig,
              image_size: int, mirrored: bool) -> str:
        key = {"weights": weights_fingerprint(extractor), "images_dir": os.path.realpath(images_dir),
               "image_size": image_size, "crop_faces": pcfg.crop_faces, "align": pcfg.align,
               "face_margin": pcfg.face_margin, "mirrored": mirrored,
               "idct": pipeline.JPEG_IDCT}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        backbone = next(layer for layer in extractor.layers if isinstance(layer, keras.Model))
        return os.path.join(self.folder, f"{backbone.name}-{digest}.npz")

    @staticmethod
    def _row_keys(manifest: pd.DataFrame, images_dir: str, pcfg: pipeline.PipelineConfig
                  ) -> np.ndarray:
        """What a stored row was computed from: the path, the file's size and modification
        time (a changed file is run again), and the face box when faces are cropped."""
        keys = [f"{p}\0{size}\0{mtime}" for p in manifest["path"]
                for size, mtime in [images.file_stamp(os.path.join(images_dir, p))]]
        if pcfg.crop_faces:
            boxes = manifest[pipeline.BOX_COLUMNS].to_numpy(np.float64)
            keys = [f"{k}\0{b.tolist()}" for k, b in zip(keys, boxes)]
        if pcfg.align:
            keys = [f"{k}\0{b}" for k, b in zip(keys, manifest["aligned_bbox"].astype(str))]
        return np.array(keys, dtype=str)

    def _read(self, path: str) -> tuple[np.ndarray, np.ndarray | None]:
        if not os.path.exists(path):
            return np.zeros(0, str), None
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["keys"], f["features"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            # A cache: what cannot be read is computed again (and the file rewritten).
            logging.warning("feature store: %s cannot be read (%s: %s); computing its rows again",
                            path, type(e).__name__, e)
            return np.zeros(0, str), None

    def features(self, extractor: keras.Model, manifest: pd.DataFrame, images_dir: str,
                 pcfg: pipeline.PipelineConfig, image_size: int, mirrored: bool) -> np.ndarray:
        """(N, D) features of the manifest's images in row order (mirrored: of their mirror
        images)."""
        path = self._file(extractor, images_dir, pcfg, image_size, mirrored)
        keys, feats = self._read(path)
        wanted = self._row_keys(manifest, images_dir, pcfg)
        missing = ~pd.Index(wanted).isin(pd.Index(keys))
        missing &= ~pd.Index(wanted).duplicated()
        if missing.any():
            new = extract_features(extractor, manifest[missing], images_dir, pcfg, image_size,
                                   flips=(mirrored,))[:, 0]
            keys = np.concatenate([keys, wanted[missing]])
            feats = new if feats is None else np.concatenate([feats, new])
            os.makedirs(self.folder, exist_ok=True)
            with fileio.atomic_path(path) as tmp:
                np.savez(tmp, keys=keys, features=feats)
            logging.info("feature store: %d new rows in %s (%d in all)", int(missing.sum()),
                         path, len(keys))
        return feats[pd.Index(keys).get_indexer(wanted)]


def extract_features(extractor: keras.Model, manifest: pd.DataFrame, images_dir: str,
                     pcfg: pipeline.PipelineConfig, image_size: int,
                     flips=(False, True)) -> np.ndarray:
    """Backbone features of every image: (N, len(flips), D), as stored (False) and mirrored
    (True), in the order of `flips`.

    Runs locally on each worker (no collectives): every worker needs all features.

    Raises:
      ValueError: an image failed to decode (the cache must cover every manifest row).
    """

    def features(x):
        feats = [extractor(tf.reverse(x, axis=[2]) if flip else x, training=False)
                 for flip in flips]
        return tf.stack([tf.cast(f, tf.float32) for f in feats], axis=1)

    return pipeline.map_images(features, manifest, images_dir, pcfg, image_size,
                               "backbone features")


def feature_pipelines(cfg, strategy, model: keras.Model, train_df: pd.DataFrame,
                      val_df: pd.DataFrame, images_dir: str):
    """The frozen backbone's features of every image, and pipelines over them.

    Args:
      cfg: the run's TrainConfig.

    Returns:
      (train pipeline, val pipeline, the head model that trains on them, sharing the model's
      head layers so that training it trains them; {split: (N, D) features of its images as
      stored}, which the interval scale reuses instead of a second backbone pass).
    """
    with strategy.scope():
        extractor = models.feature_extractor(model)
        head = models.head_model(model)
    start = time.monotonic()
    size = cfg.model.image_size
    store = FeatureStore(cfg.feature_store) if cfg.feature_store else None

    def table(df: pd.DataFrame, flips: tuple[bool, ...]) -> np.ndarray:
        if store is None:
            return extract_features(extractor, df, images_dir, cfg.pipeline, size, flips)
        return np.stack([store.features(extractor, df, images_dir, cfg.pipeline, size, flip)
                         for flip in flips], axis=1)

    train_features = table(train_df, (False, True))
    val_features = table(val_df, (False,))
    logging.info("feature cache: %s train and %s val features in %.1fs",
                 train_features.shape, val_features.shape, time.monotonic() - start)
    train = pipeline.InputPipeline(train_df, images_dir, cfg.pipeline, size, training=True,
                                   seed=cfg.seed, features=train_features)
    val = pipeline.InputPipeline(val_df, images_dir, cfg.pipeline, size, training=False,
                                 features=val_features)
    return train, val, head, {"train": train_features[:, 0], "val": val_features[:, 0]}
