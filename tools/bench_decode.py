"""JPEG decoding: TensorFlow's two IDCTs against each other (speed) and against Pillow (pixels).

  python tools/bench_decode.py [--images=DIR] [--count=400] [--repeats=2]

Why: a client that decodes with Pillow (libjpeg's accurate integer IDCT, JDCT_ISLOW) sees
other pixels than TensorFlow's default decode_jpeg (the fast IDCT, JDCT_IFAST), so it cannot
reproduce the served ages; dct_method="INTEGER_ACCURATE" is Pillow's IDCT. This measures
what switching costs: decode time of each method over the same files, interleaved and
repeated (ratios, not absolute times: machines differ ~2x), and the largest pixel
difference from Pillow. Without --images it writes a small synthetic release to decode.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.DEFINE_string("images", None, "A folder of .jpg files (searched recursively).")
COUNT = flags.DEFINE_integer("count", 400, "Files to decode.")
REPEATS = flags.DEFINE_integer("repeats", 2, "Timed passes per method (interleaved).")

METHODS = ("INTEGER_FAST", "INTEGER_ACCURATE")


def _files(folder: str, count: int) -> list[str]:
    files = sorted(glob.glob(os.path.join(folder, "**", "*.jpg"), recursive=True))
    if not files:
        sys.exit(f"--images={folder}: no .jpg files there")
    return files[:count]


def _synthetic(count: int) -> str:
    from age_tf.synthetic import synth

    out = tempfile.mkdtemp(prefix="bench_decode_")
    synth.generate(synth.SynthConfig(num_images=count, seed=0, workers=2), out)
    return out


def main(argv):
    del argv
    import tensorflow as tf
    from PIL import Image

    files = []
    for f in _files(FLAGS.value or _synthetic(COUNT.value), COUNT.value):
        try:  # a release's broken files (the synthetic one plants some) are left out
            with Image.open(f) as im:
                im.convert("RGB")
            files.append(f)
        except OSError:
            continue
    data = [open(f, "rb").read() for f in files]
    pixels = np.mean([np.prod(Image.open(f).size) for f in files])

    decoders = {m: tf.function(lambda b, m=m: tf.io.decode_jpeg(b, channels=3, dct_method=m))
                for m in METHODS}
    for m in METHODS:  # trace and warm up
        decoders[m](tf.constant(data[0]))
    times = {m: [] for m in METHODS}
    for _ in range(REPEATS.value):
        for m in METHODS:
            start = time.perf_counter()
            for b in data:
                decoders[m](tf.constant(b))
            times[m].append(time.perf_counter() - start)
    worst = {m: 0 for m in METHODS}
    for f, b in zip(files, data):
        pil = np.asarray(Image.open(f).convert("RGB"), np.int16)
        for m in METHODS:
            ours = decoders[m](tf.constant(b)).numpy().astype(np.int16)
            worst[m] = max(worst[m], int(np.abs(ours - pil).max()))
    base = min(times["INTEGER_FAST"])
    print(f"{len(files)} JPEG files, {pixels / 1e3:.0f} kpixels each on average")
    for m in METHODS:
        t = times[m]
        print(f"{m:17s} passes {', '.join(f'{x:.2f}s' for x in t)}  "
              f"({len(files) / min(t):.0f} files/s, {min(t) / base:.2f}x INTEGER_FAST)  "
              f"largest difference from Pillow: {worst[m]} grey levels")


if __name__ == "__main__":
    app.run(main)
