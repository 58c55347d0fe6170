"""Measures data preparation on a synthetic set: dedup precision/recall, rejections, speed.

Run by hand (not part of the test suite):
  python tools/measure_prepare.py --num_images=5000 --work_dir=/tmp/age_tf_measure

Prints prepare's wall time per 1,000 metadata rows with one worker process and with all
cores (the one-worker run is the baseline measured in the same run), and how well the
injected duplicates and defects were caught.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pandas as pd
from absl import app, flags, logging

from age_tf.data import prepare
from age_tf.synthetic import synth

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 5000, "Rows in the synthetic set.")
flags.DEFINE_integer("seed", 7, "Synthetic set seed.")
flags.DEFINE_string("work_dir", "/tmp/age_tf_measure_prepare", "Scratch folder (replaced).")


def _run(raw: str, out: str, workers: int) -> tuple[dict, float]:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = prepare.prepare(prepare.PrepareConfig(
        mat=os.path.join(raw, "imdb.mat"), images_dir=os.path.join(raw, "imdb_crop"),
        out_dir=out, workers=workers))
    return report, time.perf_counter() - start


def main(_):
    logging.set_verbosity(logging.WARNING)
    raw = os.path.join(FLAGS.work_dir, "raw")
    shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
    start = time.perf_counter()
    synth.generate(synth.SynthConfig(num_images=FLAGS.num_images, seed=FLAGS.seed), raw)
    synth_s = time.perf_counter() - start
    cores = os.cpu_count() or 1
    # Warm the page cache so both runs read from memory, then measure.
    _run(raw, os.path.join(FLAGS.work_dir, "warm"), cores)
    _, t1 = _run(raw, os.path.join(FLAGS.work_dir, "one"), 1)
    report, tn = _run(raw, os.path.join(FLAGS.work_dir, "all"), cores)

    truth = pd.read_csv(os.path.join(raw, "ground_truth.csv"))
    rejected = pd.read_csv(os.path.join(FLAGS.work_dir, "all", "rejected.csv"))
    score = synth.score_dedup(truth, rejected)
    merged = truth.merge(rejected, on="row", how="left")
    per_kind = {}
    for kind, g in merged.groupby("kind"):
        per_kind[kind] = {"rows": len(g), "rejected_before_sampling": int(
            (g["stage"].notna() & ~g["stage"].fillna("").str.startswith("sample")).sum())}
    n = FLAGS.num_images
    result = {
        "rows": n,
        "synth_seconds": round(synth_s, 2),
        "prepare_seconds_1_worker": round(t1, 2),
        f"prepare_seconds_{cores}_workers": round(tn, 2),
        "seconds_per_1000_rows_1_worker": round(t1 / n * 1000, 3),
        f"seconds_per_1000_rows_{cores}_workers": round(tn / n * 1000, 3),
        "speedup_vs_1_worker": round(t1 / tn, 2),
        "dedup": score,
        "stages": report["stages"],
        "rejections_by_kind": per_kind,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
