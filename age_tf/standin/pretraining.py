"""The stand-in's pretraining corpus and network (what tools/pretrain_standin.py trains).

One definition of both, so that the tool that writes the shipped files and the tests that
re-measure them cannot drift apart.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from age_tf import labels, metrics, parallel
from age_tf.data import pipeline
from age_tf.synthetic import faces, synth
from age_tf.train import models
from age_tf.train import standin_weights as weights

# Seeds of the corpus are drawn from SeedSequence([_CORPUS_TAG, seed]); the synthetic
# release (age-tf-synth) draws from default_rng(seed), another stream, so no person of the
# corpus is a person of any demo set (identity traits are continuous draws).
_CORPUS_TAG = 0x5A4D
# The fixed check set every card records figures on, re-measured by the tests.
CHECK_SEED = 7
CHECK_IMAGES = 96

# Identity traits the pretraining head predicts besides age (standardized in the loss).
ATTRIBUTES = ("gender", "beard", "long_hair", "recedes", "skin_r", "skin_g", "skin_b",
              "hair_r", "hair_g", "hair_b", "face_width", "jaw", "nose", "grey_onset")


def _attributes(ident: faces.Identity) -> list[float]:
    return [ident.gender, ident.beard, ident.long_hair, ident.recedes,
            *(c / 255 for c in ident.skin), *(c / 255 for c in ident.hair),
            ident.face_width, ident.jaw, ident.nose, ident.grey_onset / 100]


def render_corpus(num: int, seed: int, image_size: int, images_per_identity: float = 4.0,
                  workers: int | None = None) -> dict:
    """Renders `num` faces of new people as the demo's pipeline would see them.

    Each face goes through what a release crop goes through: rendered at 96-192 px, JPEG
    at quality 60-95 (2% grayscale), decoded and resized by the input pipeline's own code.
    Ages: half IMDB-like (synth.sample_ages), half uniform over 0-100, so that every age is
    seen.

    Returns:
      {"images": uint8 [num, size, size, 3], "age": float32 [num], "identity": int64
       [num], "attributes": float32 [num, len(ATTRIBUTES)]}.
    """
    rng = np.random.default_rng(np.random.SeedSequence([_CORPUS_TAG, seed]))
    counts = faces.photo_counts(rng, num, images_per_identity)
    identity = np.repeat(np.arange(len(counts)), counts)
    ident_seeds = rng.integers(0, 2**63 - 1, len(counts))
    ages = np.where(rng.random(num) < 0.5, synth.sample_ages(rng, num), rng.integers(0, 101, num))
    sizes = rng.integers(96, 193, num)
    quality = rng.integers(60, 96, num)
    grey = rng.random(num) < 0.02
    seeds = rng.integers(0, 2**63 - 1, num)
    jobs = [(int(ident_seeds[identity[i]]), int(seeds[i]), float(ages[i]), int(sizes[i]),
             int(quality[i]), bool(grey[i])) for i in range(num)]
    chunks = parallel.chunked(jobs, 256)
    blobs = [b for res in parallel.map_in_processes(faces.render_jpegs, chunks,
                                                     workers or os.cpu_count() or 1) for b in res]
    ds = tf.data.Dataset.from_tensor_slices(blobs).map(
        lambda b: pipeline.resize(pipeline.decode(b), image_size),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    images = np.concatenate(list(ds.batch(512).as_numpy_iterator()), 0)
    attrs = np.array([_attributes(faces.random_identity(np.random.default_rng(s)))
                      for s in ident_seeds], dtype=np.float32)[identity]
    return {"images": images, "age": ages.astype(np.float32), "identity": identity,
            "attributes": attrs}


def pretrain_model(backbone: str, image_size: int) -> keras.Model:
    """Pixels [0, 255] -> {"age": age / 100, "attributes": standardized traits}.

    The backbone is the registered one, built exactly as `--weights=none` builds it, so
    its weights load into the fine-tuning model by layer position.
    """
    spec = models.BACKBONES[backbone]
    net = models.build_backbone(models.ModelConfig(backbone=backbone, image_size=image_size,
                                                   weights="none", tune="full"))
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = spec.normalization()(inputs) if spec.normalization else inputs
    x = net(x)
    x = keras.layers.Dense(256, activation="gelu", name="pretrain_dense")(x)
    return keras.Model(inputs, {
        "age": keras.layers.Dense(1, dtype="float32", name="pretrain_age")(x),
        "attributes": keras.layers.Dense(len(ATTRIBUTES), dtype="float32",
                                         name="pretrain_attributes")(x),
    }, name=f"{backbone}_standin")


def load_pretrain_model(backbone: str, image_size: int, path: str | None = None) -> keras.Model:
    """The whole pretraining network (backbone + its age/attribute head) from a file."""
    path = path or weights.shipped(backbone)
    model = pretrain_model(backbone, image_size)
    with np.load(path) as arrays:
        arrays = dict(arrays)
        weights.assign(weights.nested_backbone(model).layers, arrays, "backbone", path)
        weights.assign(weights.pretrain_head_layers(model), arrays, "pretrain_head", path)
    return model


def age_figures(model: keras.Model, corpus: dict, batch_size: int = 128) -> dict:
    """MAE (years) and PLCC of the pretraining head's age on a rendered corpus."""
    pred = labels.to_years(model.predict(corpus["images"].astype(np.float32),
                                         batch_size=batch_size, verbose=0)["age"][:, 0])
    age = corpus["age"]
    return {"mae_years": metrics.mae(age, pred), "plcc": metrics.plcc(pred, age),
            "images": int(len(age))}


def feature_norms(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> dict:
    """Median, 99th percentile and maximum L2 norm of the backbone's pooled features.

    A healthy backbone keeps them within a small factor of each other: a few faces far off
    make every head fitted on top extrapolate to absurd ages.
    """
    features = keras.Model(model.inputs, model.get_layer("pretrain_dense").input)
    norms = np.linalg.norm(features.predict(images.astype(np.float32), batch_size=batch_size,
                                            verbose=0), axis=1)
    median, p99, top = np.percentile(norms, [50, 99, 100])
    return {"median": float(median), "p99": float(p99), "max": float(top)}


def check_figures(backbone: str, image_size: int, path: str | None = None) -> dict:
    """The card's check: the stored network's age figures on the fixed check set."""
    corpus = render_corpus(CHECK_IMAGES, CHECK_SEED, image_size, workers=1)
    return age_figures(load_pretrain_model(backbone, image_size, path), corpus)
