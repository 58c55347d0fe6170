"""Measures age-tf-predict on hostile photo sizes: a 144 MP JPEG (a face on a flat canvas),
crowds (grace_hopper.jpg tiled 480 times at 36 MP and at 144 MP: hundreds of faces in one
photo) and a 30000 x 30000 PNG of a few MB (900 MP: over the pixel budget, refused unread).

Run by hand (not part of the test suite):
  python tools/measure_large_photos.py --model=runs/demo/runs/mobilenet_v2_full

Each command runs in its own process, twice; wall time and peak memory (the process's
maximum RSS) are printed with their ratio to the same command on matplotlib's 0.3 MP photo
measured in the same run (the baseline: TensorFlow, MTCNN and the model load, one face).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags
from matplotlib import cbook
from PIL import Image

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A run directory or export/ folder.", required=True)
flags.DEFINE_integer("repeats", 2, "Runs of each command.")


def write_photos(folder: str) -> dict[str, str]:
    """The baseline photo, the 144 MP JPEG with its face at (5000, 4000), the 900 MP PNG."""
    Image.MAX_IMAGE_PIXELS = None
    face = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    paths = {"baseline 0.3 MP JPEG": os.path.join(folder, "grace.jpg"),
             "144 MP JPEG": os.path.join(folder, "large_144mp.jpg"),
             "900 MP PNG": os.path.join(folder, "bomb_900mp.png")}
    face.save(paths["baseline 0.3 MP JPEG"])
    canvas = Image.new("RGB", (12000, 12000), (120, 140, 160))
    canvas.paste(face.resize((2048, 2400)), (5000, 4000))
    canvas.save(paths["144 MP JPEG"], quality=85)
    del canvas
    for name, scale in (("36 MP crowd, 480 faces", 0.5), ("144 MP crowd, 480 faces", 1.0)):
        tile = face.resize((round(face.width * scale), round(face.height * scale)))
        crowd = Image.new("RGB", (tile.width * 24, tile.height * 20))
        for i in range(480):
            crowd.paste(tile, ((i % 24) * tile.width, (i // 24) * tile.height))
        paths[name] = os.path.join(folder, f"crowd_{scale:g}.jpg")
        crowd.save(paths[name], quality=85)
        del crowd
    Image.new("RGB", (30000, 30000), (200, 200, 200)).save(paths["900 MP PNG"], optimize=True)
    return paths


def measure(path: str) -> tuple[float, float, str]:
    """(seconds, peak GB, first answer line) of age-tf-predict on one photo, in a new process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "age_tf.cli.predict",
                                  f"--model={FLAGS.model}", path], stdout=out, stderr=err)
        _, _, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest so far
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        lines = out.read().splitlines() + [e for e in err.read().splitlines() if "error" in e]
    faces = sum(1 for line in lines if "years" in line)
    said = (lines or [""])[0] + (f" ... ({faces} faces)" if faces > 1 else "")
    return seconds, usage.ru_maxrss / 2**20, said


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as folder:
        # Written by another process: Linux carries a parent's peak memory into its children
        # (ru_maxrss survives fork and exec), and drawing the 900 MP PNG takes 2.7 GB.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            paths = pool.apply(write_photos, (folder,))
        print("| photo | file MB | run | seconds | x baseline | peak GB | answer |")
        print("|---|---|---|---|---|---|---|")
        base = None
        for name, path in paths.items():
            for r in range(FLAGS.repeats):
                seconds, peak, said = measure(path)
                base = base or seconds
                print(f"| {name} | {os.path.getsize(path) / 1e6:.1f} | {r + 1} | {seconds:.1f} | "
                      f"{seconds / base:.2f} | {peak:.2f} | {said[:90]} |", flush=True)


if __name__ == "__main__":
    app.run(main)
