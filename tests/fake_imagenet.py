"""Stand-ins for Keras' ImageNet weight downloads: files of the same architecture.

Offline, `weights="imagenet"` cannot download anything. These helpers write no-top weight
files in Keras' own legacy HDF5 layout (what the download holds) from a randomly initialized
model of the same architecture, with the ImageNet normalization statistics that Keras'
EfficientNet file carries, and redirect Keras' downloader to them. Everything after the
download (Keras' constructor, its extra layers, load_weights) is the real code path.
"""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np

from age_tf.train import models


def write_fake_imagenet(folder: str, backbone: str, images: np.ndarray | None = None,
                        seed: int = 0) -> str:
    """Writes the no-top ImageNet weights file of `backbone` into folder; returns its path.

    Args:
      images: float [N, 32, 32, 3] pixels in [0, 255] to calibrate BatchNorm statistics on
        (best: the kind of images the test feeds; a random-weight network calibrated on
        other images is chaotic on these). Default: smooth random images.
    """
    spec = models.BACKBONES[backbone]
    keras.utils.set_random_seed(seed)
    model = spec.constructor(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    std = np.array([0.229, 0.224, 0.225], np.float32)
    norm = [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]
    for layer in norm:  # calibrate as the weights="imagenet" model computes (see below)
        layer.adapt_mean.assign(np.array([0.485, 0.456, 0.406], np.float32))
        layer.adapt_variance.assign(std ** 2 * std)
        layer.finalize_state()
    # Trained-looking BatchNorm statistics: with Keras' initial ones (0, 1) a deep random
    # network maps every input to nearly the same features. One training-mode pass with
    # momentum 0 sets each layer's moving statistics to those of a batch of images.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    # Smooth random images (photos are smooth; statistics of pixel noise would not fit them).
    if images is None:
        coarse = np.random.default_rng(seed).uniform(0, 255, (64, 4, 4, 3)).astype(np.float32)
        images = np.asarray(keras.ops.image.resize(coarse, (32, 32), interpolation="bilinear"))
    if spec.normalization is not None:
        images = np.asarray(spec.normalization()(images))
    model(images, training=True)
    for layer in norm:  # what Keras' EfficientNet files hold: variance = stddev squared
        layer.adapt_variance.assign(std ** 2)
        layer.finalize_state()
    from keras.src.legacy.saving import legacy_h5_format

    path = os.path.join(folder, spec.imagenet_file)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def patch_download(monkeypatch, folder: str) -> list[str]:
    """Makes Keras' get_file serve files from folder (the ones it asks for are recorded)."""
    from keras.src.utils import file_utils

    asked: list[str] = []

    def get_file(fname=None, origin=None, **kwargs):
        asked.append(fname)
        path = os.path.join(folder, fname)
        if not os.path.exists(path):
            raise OSError(f"offline test: no fake for {fname}")
        return path

    monkeypatch.setattr(file_utils, "get_file", get_file)
    return asked
