"""SavedModel export with two serving signatures, both returning age in years."""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from age_tf import labels
from age_tf.data import pipeline
from age_tf.train.run_dir import RunDir

IMAGES_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serve_bytes"


def find_export(path: str) -> str:
    """The SavedModel folder of `path`: an export/ folder, or a run directory holding one.

    Raises:
      FileNotFoundError: no SavedModel there (says what to pass instead).
    """
    run_export = RunDir(path).export
    if os.path.isdir(run_export):
        path = run_export
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{path}: no SavedModel here; pass --model=<run>/export "
                                "(a finished age-tf-train run's export folder) or the run folder")
    return path


def export_saved_model(model: keras.Model, image_size: int, export_dir: str) -> str:
    """Writes a SavedModel to export_dir (replacing an earlier export atomically).

    Signatures:
      serving_default(images): float32 [N, S, S, 3] pixels in [0, 255] -> {'age': [N] years}.
      serve_bytes(image_bytes): string [N] encoded JPEG/PNG -> {'age': [N] years}; decoding,
        resizing and normalization happen in the graph, exactly as in the input pipeline.

    Returns:
      export_dir.
    """
    size = image_size

    def years(images):
        return {"age": labels.to_years(tf.cast(model(images, training=False), tf.float32))}

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve_images(images):
        return years(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda data: pipeline.resize(pipeline.decode(data), size),
            image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return years(tf.cast(images, tf.float32))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(IMAGES_SIGNATURE, serve_images)
    archive.add_endpoint(BYTES_SIGNATURE, serve_bytes)
    export_dir = export_dir.rstrip("/")
    tmp, old = f"{export_dir}.tmp", f"{export_dir}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(tmp, verbose=False)
    # Swap in the new export; a crash in between leaves export.old, never half an export.
    if os.path.exists(export_dir):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(export_dir, old)
    os.replace(tmp, export_dir)
    shutil.rmtree(old, ignore_errors=True)
    return export_dir
