"""Measures photo prediction: the crop margin of a folder of release crops, and throughput.

Run by hand (not part of the test suite):
  # Where a whole age-tf-predict run's time goes, cold (a new process) and warm (loaded):
  python tools/measure_photos.py --model=runs/demo/runs/mobilenet_v2_full --parts=command
  # The margin the release's crops carry around the detected face (run it on real crops):
  python tools/measure_photos.py --crops_dir=/data/imdb/imdb_crop --model=RUN
  # Throughput on 2 cores, on matplotlib's bundled photo and composites of it:
  python tools/measure_photos.py --model=runs/demo/runs/mobilenet_v2_full

The margin: for each crop where MTCNN finds exactly one face, (crop side - box side) / 2 /
box side, per axis; the median is what --face_margin should be so that photo crops frame
faces as the training crops did. Throughput: photos/s and faces/s for detection alone and
for detection + crop + age (all faces batched), each measured twice.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags, logging
from matplotlib import cbook
from PIL import Image

from age_tf.serve import photos

FLAGS = flags.FLAGS
flags.DEFINE_string("crops_dir", None, "Release-style crops (NN/*.jpg) to measure the margin on.")
flags.DEFINE_integer("max_crops", 300, "Crops to look at.")
flags.DEFINE_string("model", None, "A run directory or export/ for the throughput measurement.")
flags.DEFINE_integer("photos", 12, "Photos per throughput round.")
flags.DEFINE_list("parts", ["margin", "throughput"], "margin (needs --crops_dir), throughput, "
                  "command (needs --model).")
flags.DEFINE_string("work_dir", "/tmp/age_tf_measure_photos", "Scratch folder (command part).")


def measure_margin(crops_dir: str, detector: photos.FaceDetector, limit: int) -> None:
    paths = sorted(glob.glob(os.path.join(crops_dir, "*", "*.jpg")))[:limit]
    mx, my = [], []
    for p in paths:
        try:
            image = photos.read_photo(p)
        except ValueError:
            continue
        faces = detector(image)
        if len(faces) != 1:
            continue
        (x1, y1, x2, y2), _, _ = faces[0]
        h, w = image.shape[:2]
        mx.append((w - (x2 - x1)) / 2 / (x2 - x1))
        my.append((h - (y2 - y1)) / 2 / (y2 - y1))
    if not mx:
        print(f"no single face found in {len(paths)} crops of {crops_dir}")
        return
    q = lambda v: np.percentile(v, [25, 50, 75]).round(3).tolist()  # noqa: E731
    print(f"{len(mx)} of {len(paths)} crops with one face: margin x quartiles {q(mx)}, "
          f"y quartiles {q(my)}")


def measure_throughput(model_path: str, detector: photos.FaceDetector, n: int) -> None:
    grace = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    group = np.concatenate([grace, grace[:, ::-1], grace], axis=1)  # three faces, 1536 x 600
    model = photos.AgeModel(model_path)
    batch = [(f"p{i}", grace if i % 2 else group) for i in range(n)]
    faces_per_round = sum(1 if i % 2 else 3 for i in range(n))
    photos.estimate_many(batch[:2], model, detector)  # warm-up: traces and loads
    for round_ in (1, 2):
        start = time.perf_counter()
        for _, image in batch:
            detector(image)
        det = time.perf_counter() - start
        start = time.perf_counter()
        faces = photos.estimate_many(batch, model, detector)
        total = time.perf_counter() - start
        assert len(faces) == faces_per_round, len(faces)
        print(f"round {round_}: detection {n / det:.2f} photos/s ({faces_per_round / det:.2f} "
              f"faces/s); detection + crop + age {n / total:.2f} photos/s "
              f"({faces_per_round / total:.2f} faces/s); photos 512x600 and 1536x600 alternating")


def _photo_files(folder: str, n: int) -> list[str]:
    """n copies of matplotlib's photo (512x600, one face) under distinct names."""
    os.makedirs(folder, exist_ok=True)
    data = open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb").read()
    paths = []
    for i in range(n):
        paths.append(os.path.join(folder, f"photo{i:03d}.jpg"))
        with open(paths[-1], "wb") as f:
            f.write(data)
    return paths


def _timed_process(args: list[str]) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "age_tf.cli.predict", *args], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"age-tf-predict failed: {r.stderr[-2000:]}")
    return time.perf_counter() - start


def _phases(model_path: str, photo: str) -> dict:
    """Seconds of each step of one photo's prediction in this process, in call order, then
    the same photo again (warm)."""
    out = {}
    start = time.perf_counter()
    import tensorflow as tf

    tf.config.list_physical_devices()
    out["import TensorFlow"] = time.perf_counter() - start
    steps = [("load the SavedModel", lambda: photos.AgeModel(model_path)),
             ("build MTCNN", photos.FaceDetector)]
    made = {}
    for name, fn in steps:
        start = time.perf_counter()
        made[name] = fn()
        out[name] = time.perf_counter() - start
    model, detector = made["load the SavedModel"], made["build MTCNN"]
    image = photos.read_photo(photo)
    for when in ("first", "warm"):
        start = time.perf_counter()
        found = detector(image)
        out[f"detect ({when})"] = time.perf_counter() - start
        crops = np.stack([photos.crop_face(image, box, model.crop_margin, model.image_size)
                          for box, _, _ in found])
        start = time.perf_counter()
        model.ages(crops)
        out[f"age ({when})"] = time.perf_counter() - start
    return out


def measure_command(model_path: str) -> None:
    """Whole age-tf-predict processes on 1 and 100 photos, detect and given, each twice; then
    the phases of one photo inside a process."""
    one = _photo_files(os.path.join(FLAGS.work_dir, "one"), 1)
    hundred = _photo_files(os.path.join(FLAGS.work_dir, "hundred"), 100)
    for faces in ("detect", "given"):
        for name, paths in (("1 photo", one), ("100 photos", hundred)):
            times = [_timed_process([f"--model={model_path}", f"--faces={faces}", *paths])
                     for _ in range(2)]
            print(f"age-tf-predict --faces={faces}, {name}: {times[0]:.1f} s and {times[1]:.1f} s "
                  "(a new process each)", flush=True)
    phases = _phases(model_path, one[0])
    print("one photo in one process: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))


def main(_):
    logging.set_verbosity(logging.WARNING)
    if "command" in FLAGS.parts and FLAGS.model:
        measure_command(FLAGS.model)
    detector = photos.FaceDetector()
    if "margin" in FLAGS.parts and FLAGS.crops_dir:
        measure_margin(FLAGS.crops_dir, detector, FLAGS.max_crops)
    if "throughput" in FLAGS.parts and FLAGS.model:
        measure_throughput(FLAGS.model, detector, FLAGS.photos)


if __name__ == "__main__":
    app.run(main)
