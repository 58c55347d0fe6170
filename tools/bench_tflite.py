"""TFLite exports against the SavedModel they come from: test MAE, file size, per-face latency.

Run by hand on a finished, exported run (the demo's, e.g.):
  python tools/bench_tflite.py --model_dir=runs/demo/runs/mobilenet_v2_head \
      --data_dir=runs/demo/data
For each of float32, float16 and int8 (activations calibrated on training images) it
converts the run's serving signature, scores the test split against the labels, and times
one face at a time on the CPU; every figure is reported beside the SavedModel's, measured in
the same run, and as a ratio to it.
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from age_tf import metrics
from age_tf.data import pipeline, prepared
from age_tf.serve.served_model import AgeModel
from age_tf.train import export
from age_tf.train.run_dir import RunDir
from age_tf.train.train_config import TrainConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished, exported age-tf-train run.")
flags.DEFINE_string("data_dir", None, "Its prepared data (the test split is scored).")
flags.DEFINE_integer("latency_faces", 64, "Faces timed one at a time.")
flags.DEFINE_integer("calibration_images", 200, "Training images calibrating int8.")
flags.mark_flags_as_required(["model_dir", "data_dir"])


def _test_faces(run: RunDir, data_dir: str):
    cfg = TrainConfig.from_run(run)
    manifest, images_dir = prepared.load_manifest(data_dir, "test")
    images = pipeline.map_images(None, manifest, images_dir, cfg.evaluation_pipeline(64),
                                 cfg.model.image_size)
    return images.astype(np.float32), manifest["age"].to_numpy(float)


def _latency_ms(model: AgeModel, faces: np.ndarray) -> float:
    model(faces[:2])  # warm-up
    start = time.perf_counter()
    for face in faces:
        model(face[None])
    return 1000 * (time.perf_counter() - start) / len(faces)


def main(argv):
    del argv
    run = RunDir(FLAGS.model_dir)
    faces, ages = _test_faces(run, FLAGS.data_dir)
    timed = faces[:FLAGS.latency_faces]
    saved = AgeModel(run.export)
    base_pred = saved.ages(faces)
    base = {"mae": metrics.mae(ages, base_pred), "ms": _latency_ms(saved, timed),
            "bytes": sum(os.path.getsize(os.path.join(d, f))
                         for d, _, fs in os.walk(run.export) for f in fs)}
    print(f"SavedModel: test MAE {base['mae']:.3f} years, {base['ms']:.2f} ms/face, "
          f"{base['bytes'] / 1e6:.1f} MB ({len(faces)} test faces)")
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in export.QUANTIZATIONS:
            rep = (export.representative_images(run, FLAGS.calibration_images)
                   if quantize == "int8" else None)
            start = time.perf_counter()
            path = os.path.join(tmp, f"{quantize}.tflite")
            with open(path, "wb") as f:
                f.write(export.tflite_bytes(run.export, quantize, rep))
            convert = time.perf_counter() - start
            lite = AgeModel(path)
            pred = lite.ages(faces)
            mae, ms = metrics.mae(ages, pred), _latency_ms(lite, timed)
            size = os.path.getsize(path)
            print(f"TFLite {quantize:7s}: test MAE {mae:.3f} years ({mae - base['mae']:+.3f}), "
                  f"max |age - SavedModel's| {np.abs(pred - base_pred).max():.3f} years, "
                  f"{ms:.2f} ms/face ({ms / base['ms']:.2f}x), {size / 1e6:.2f} MB "
                  f"({size / base['bytes']:.2f}x); converted in {convert:.0f} s")


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    app.run(main)
