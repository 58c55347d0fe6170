"""The study's Figures 1 and 2: training faces as stored, and as the pipeline feeds them."""

from __future__ import annotations

import os

import pandas as pd
import tensorflow as tf

from age_tf import plots
from age_tf.data import pipeline, prepared
from age_tf.data.pipeline_config import InputsConfig  # noqa: F401  (its flags)


def sample_faces(manifest: pd.DataFrame, images_dir: str, cfg: pipeline.PipelineConfig,
                 image_size: int, num: int, seed: int = 0):
    """Training faces before and after the transformations, through the pipeline's own ops.

    Returns:
      (originals as decoded, transformed as the network sees them, ages, flipped flags).
    """
    rows = manifest.sample(n=min(num, len(manifest)), random_state=seed)
    before, after, flipped = [], [], []
    for i, row in enumerate(rows.itertuples()):
        image = pipeline.read_image(os.path.join(images_dir, row.path))
        box = tf.constant([row.face_x1, row.face_y1, row.face_x2, row.face_y2], tf.float32)
        small = pipeline.resize(tf.constant(image), image_size, box if cfg.crop_faces else None,
                                cfg.face_margin)
        out = pipeline.random_flip(small, tf.constant([seed, i], tf.int64))
        before.append(image)
        after.append(out.numpy())
        flipped.append(bool(tf.reduce_any(out != small)))
    return before, after, rows["age"].tolist(), flipped


def write_input_figures(data_dir: str, out_dir: str, num: int, cfg: pipeline.PipelineConfig,
                        image_size: int, seed: int = 0) -> list[str]:
    """Writes Figures 1 and 2 for the training split; returns their paths."""
    manifest, images_dir = prepared.load_manifest(data_dir, "train")
    before, after, ages, flipped = sample_faces(manifest, images_dir, cfg, image_size, num, seed)
    os.makedirs(out_dir, exist_ok=True)
    fig1 = os.path.join(out_dir, "figure1_faces.png")
    fig2 = os.path.join(out_dir, "figure2_transformed.png")
    plots.plot_face_grid(before, [f"age {a}  {b.shape[1]}x{b.shape[0]}" for a, b in zip(ages, before)],
                         fig1, "Training faces as stored")
    plots.plot_face_grid(after, [f"age {a}{'  flipped' if f else ''}" for a, f in zip(ages, flipped)],
                         fig2, f"After the pipeline: resized to {image_size}x{image_size}, "
                               "random horizontal flip (p=0.5)")
    return [fig1, fig2]
