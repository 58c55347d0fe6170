"""Head-mode training from cached backbone features.

A frozen backbone computes the same features every epoch, so they are computed once per
image, as stored and mirrored, and the head trains on rows of that table: the same batches
and flip draws as the image pipeline (pipeline.InputPipeline serves both), so the same final
weights up to float rounding (convolutions over differently composed batches may round
differently), at a fraction of the time per epoch.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf.data import pipeline
from age_tf.train import models


def extract_features(extractor: keras.Model, manifest: pd.DataFrame, images_dir: str,
                     pcfg: pipeline.PipelineConfig, image_size: int,
                     both_flips: bool) -> np.ndarray:
    """Backbone features of every image: (N, 2, D) as stored and mirrored, or (N, 1, D).

    Runs locally on each worker (no collectives): every worker needs all features.

    Raises:
      ValueError: an image failed to decode (the cache must cover every manifest row).
    """

    def features(x):
        feats = [extractor(x, training=False)]
        if both_flips:
            feats.append(extractor(tf.reverse(x, axis=[2]), training=False))
        return tf.stack([tf.cast(f, tf.float32) for f in feats], axis=1)

    return pipeline.map_images(features, manifest, images_dir, pcfg, image_size)


def feature_pipelines(cfg, strategy, model: keras.Model, train_df: pd.DataFrame,
                      val_df: pd.DataFrame, images_dir: str):
    """The frozen backbone's features of every image, and pipelines over them.

    Args:
      cfg: the run's TrainConfig.

    Returns:
      (train pipeline, val pipeline, the head model that trains on them; it shares the
      model's head layers, so training it trains them).
    """
    with strategy.scope():
        extractor = models.feature_extractor(model)
        head = models.head_model(model)
    start = time.monotonic()
    size = cfg.model.image_size
    train_features = extract_features(extractor, train_df, images_dir, cfg.pipeline, size, True)
    val_features = extract_features(extractor, val_df, images_dir, cfg.pipeline, size, False)
    logging.info("feature cache: %s train and %s val features in %.1fs",
                 train_features.shape, val_features.shape, time.monotonic() - start)
    train = pipeline.InputPipeline(train_df, images_dir, cfg.pipeline, size, training=True,
                                   seed=cfg.seed, features=train_features)
    val = pipeline.InputPipeline(val_df, images_dir, cfg.pipeline, size, training=False,
                                 features=val_features)
    return train, val, head
