"""Benchmark: preparation and the audit at IMDB image scale (10k -> 50k -> 150k+ images).

Run by hand (not part of the test suite; about half an hour on 2 cores, ~2 GB of disk):
  python tools/bench_scale.py                        # sizes 10000,50000,150000
  python tools/bench_scale.py --sizes=2000,6000      # a quick look

For each size, a synthetic release with small crops (64-96 px: the check and dedup stages
cost per image, not per pixel, and disk use stays in bounds) is written once, then each
stage runs in its own process, so that its peak RSS is its own:
  prepare           metadata, decode check + fingerprints of every image, dedup, split, write;
  audit_duplicates  the audit's near-duplicate search (10 bits), on prepare's fingerprints;
  audit_features    the audit's CNN features of every prepared image (MobileNetV2 stand-in at
                    64 px) and its identity-cross-fitted held-out predictions, refitted
                    without the suspects (audit.robust_heldout).
Reported per stage and size: wall seconds, images/s per core, peak RSS (the process and its
worker processes), and the growth exponent between consecutive sizes (log time ratio /
log size ratio: 1.0 is linear). Dedup precision/recall against the injected duplicates.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["10000", "50000", "150000"], "Synthetic rows per size.")
flags.DEFINE_list("stages", ["prepare", "audit_duplicates", "audit_features"], "Stages to run.")
flags.DEFINE_string("work_dir", "/tmp/age_tf_bench_scale", "Scratch folder (kept for reruns).")
flags.DEFINE_integer("seed", 11, "Synthetic set seed.")
flags.DEFINE_string("stage", None, "Internal: run one stage in this process.")
flags.DEFINE_string("root", None, "Internal: the size's folder.")


def _peak_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_mb": round(own), "worker_rss_mb": round(children)}


def _manifest(data: str):
    import pandas as pd

    from age_tf.data import prepared

    frames = []
    for split in ("train", "val", "test"):
        m, images_dir = prepared.load_manifest(data, split)
        frames.append(m.assign(split=split))
    return pd.concat(frames, ignore_index=True), images_dir


def run_stage(stage: str, root: str) -> dict:
    """One stage, in this process; returns its figures. Each stage imports only what it
    needs (prepare runs without TensorFlow), and is timed after its imports."""
    import pandas as pd

    raw, data = os.path.join(root, "raw"), os.path.join(root, "data")
    out: dict = {}
    if stage == "prepare":
        from age_tf.data import prepare
        from age_tf.synthetic import synth

        start = time.monotonic()
        shutil.rmtree(data, ignore_errors=True)
        report = prepare.prepare(prepare.PrepareConfig(
            mat=os.path.join(raw, "imdb.mat"), images_dir=os.path.join(raw, "imdb_crop"),
            out_dir=data, sample_fraction=1.0))
        out["images"] = report["stages"][0]["kept"]  # rows read
        out["kept"] = sum(v["images"] for v in report["splits"].values())
        truth = pd.read_csv(os.path.join(raw, "ground_truth.csv"))
        out["dedup"] = synth.score_dedup(truth, pd.read_csv(os.path.join(data, "rejected.csv")))
    elif stage == "audit_duplicates":
        from age_tf.evaluate import audit

        start = time.monotonic()
        manifest, images_dir = _manifest(data)
        dups, counts = audit.surviving_duplicates(manifest, images_dir,
                                                  stored=os.path.join(data, "fingerprints.npz"))
        out.update(images=len(manifest), pairs=counts["found"], listed=counts["listed"],
                   pairs_across_splits=counts["across_splits"])
    elif stage == "audit_features":
        from age_tf import metrics
        from age_tf.data import pipeline
        from age_tf.evaluate import audit
        from age_tf.train import models

        start = time.monotonic()
        manifest, images_dir = _manifest(data)
        model = models.build_model(models.ModelConfig(image_size=64, weights="standin",
                                                      tune="head"))
        extractor = models.feature_extractor(model)
        cfg = pipeline.PipelineConfig(batch_size=256)
        feats = pipeline.map_images(lambda x: extractor(x, training=False), manifest,
                                    images_dir, cfg, 64)
        pred, _, _ = audit.robust_heldout(feats, manifest["age"].to_numpy(float),
                                          manifest["identity"].to_numpy())
        out.update(images=len(manifest), heldout_mae_years=metrics.mae(
            manifest["age"].to_numpy(float), pred))
    else:
        raise app.UsageError(f"--stage={stage!r}: not one of {FLAGS.stages}")
    out["seconds"] = time.monotonic() - start
    out.update(_peak_mb())
    return out


def _synthesize(root: str, n: int) -> float:
    from age_tf.synthetic import synth

    raw = os.path.join(root, "raw")
    if os.path.exists(os.path.join(raw, "ground_truth.csv")):
        return 0.0
    start = time.monotonic()
    synth.generate(synth.SynthConfig(num_images=n, seed=FLAGS.seed, min_size=64, max_size=96),
                   raw, overwrite=True)
    return time.monotonic() - start


def _exponent(a: dict, b: dict, key: str) -> float:
    return math.log(b[key] / a[key]) / math.log(b["images"] / a["images"])


def main(argv):
    if FLAGS.stage:
        print("RESULT " + json.dumps(run_stage(FLAGS.stage, FLAGS.root)))
        return
    logging.set_verbosity(logging.WARNING)
    cores = os.cpu_count() or 1
    results: dict = {}
    for n in [int(s) for s in FLAGS.sizes]:
        root = os.path.join(FLAGS.work_dir, str(n))
        secs = _synthesize(root, n)
        if secs:
            print(f"{n:,} rows synthesized in {secs:.0f} s", flush=True)
        for stage in FLAGS.stages:
            r = subprocess.run([sys.executable, __file__, f"--stage={stage}", f"--root={root}"],
                               capture_output=True, text=True)
            line = next((l for l in r.stdout.splitlines() if l.startswith("RESULT ")), None)
            if r.returncode or not line:
                sys.exit(f"{stage} at {n:,} failed:\n{r.stderr[-3000:]}")
            res = json.loads(line[7:])
            results.setdefault(stage, []).append(res)
            print(f"{n:,} {stage}: {json.dumps(res)}", flush=True)
    print("\n| stage | images | seconds | images/s per core | peak RSS (MB, process / workers) "
          "| time growth | RSS growth |\n|---|---|---|---|---|---|---|")
    for stage, rows in results.items():
        for i, r in enumerate(rows):
            grow = (f"{_exponent(rows[i - 1], r, 'seconds'):.2f}", f"{_exponent(rows[i - 1], r, 'rss_mb'):.2f}") \
                if i else ("", "")
            print(f"| {stage} | {r['images']:,} | {r['seconds']:.1f} | "
                  f"{r['images'] / r['seconds'] / cores:,.0f} | {r['rss_mb']:,} / "
                  f"{r['worker_rss_mb']:,} | {grow[0]} | {grow[1]} |")
    for r in results.get("prepare", []):
        d = r["dedup"]
        print(f"dedup at {r['images']:,} rows: precision {d['precision']:.4f}, recall "
              f"{d['recall']:.4f} ({d['true_removals']} of {d['injected_removable']} injected "
              f"removable, {d['removed']} removed)")


if __name__ == "__main__":
    app.run(main)
