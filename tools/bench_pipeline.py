"""Benchmark: input pipeline images/s at 256x256 from synthetic JPEGs, against baselines.

Run by hand (not part of the test suite):
  python tools/bench_pipeline.py --num_images=1500

Measured side by side in one run on the same files:
  tf.data (all cores)      age_tf.data.pipeline training dataset (decode, resize, flip, batch)
  tf.data (1 core)         the same, held to a private one-thread pool
  PIL loop (1 core)        PIL decode + resize + flip in a plain Python loop
  PyDataset (PIL)          keras.utils.PyDataset doing the same work, fed the way `fit` feeds
                           it, the way popular Keras age-estimation repositories load data
  cache                    tf.data epoch 1 (decode) vs epoch 2 (from the in-memory cache)
Targets on 2 cores: tf.data >= 1.8x its one-core rate, >= 2.5x the PIL loop, >= 2x the
PyDataset loader; a cached epoch >= 5x faster than the first.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import app, flags, logging
from PIL import Image

from age_tf import labels
from age_tf.data import pipeline
from age_tf.synthetic import synth

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 1500, "Synthetic JPEGs to read per measurement.")
flags.DEFINE_integer("image_size", 256, "Output size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("repeats", 2, "Measurements per contender (the best is kept).")
flags.DEFINE_string("work_dir", "/tmp/age_tf_bench_pipeline", "Scratch folder.")


def make_images(work_dir: str, n: int) -> pd.DataFrame:
    """Clean synthetic crops sized like the release's (200-400 px a side)."""
    raw = os.path.join(work_dir, "raw")
    if not os.path.exists(os.path.join(raw, "ground_truth.csv")):
        shutil.rmtree(raw, ignore_errors=True)
        zero = {f"{k}_rate": 0.0 for k in synth.DEFECT_KINDS}
        synth.generate(synth.SynthConfig(num_images=n, seed=0, min_size=200, max_size=400,
                                         duplicate_rate=0.0, **zero), raw)
    truth = pd.read_csv(os.path.join(raw, "ground_truth.csv")).head(n)
    return pd.DataFrame({"path": truth["full_path"], "age": truth["label_age"]}), os.path.join(raw, "imdb_crop")


def _time_iter(iterable, n_images: int) -> float:
    """images/s over one whole pass, from creating the iterator to the last batch."""
    start = time.perf_counter()
    count = 0
    for x, _ in iterable:
        count += len(x)
    return count / (time.perf_counter() - start)


def tfdata_rate(df, root, size, batch, one_core: bool) -> float:
    cfg = pipeline.PipelineConfig(batch_size=batch)
    ds = pipeline.InputPipeline(df, root, cfg, size, training=True).dataset()
    if one_core:
        opts = tf.data.Options()
        opts.threading.private_threadpool_size = 1
        opts.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(opts)
    return _time_iter(ds, len(df))


def _pil_load(path: str, size: int, rng) -> np.ndarray:
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img)  # uint8, like age_tf.data.pipeline and the popular repositories' loaders
    return arr[:, ::-1] if rng.random() < 0.5 else arr


def pil_loop_rate(df, root, size, batch) -> float:
    rng = np.random.default_rng(0)
    paths = [os.path.join(root, p) for p in df["path"]]
    ages = labels.to_label(df["age"].to_numpy(np.float32))

    def batches():
        for i in range(0, len(paths), batch):
            yield np.stack([_pil_load(p, size, rng) for p in paths[i:i + batch]]), ages[i:i + batch]

    return _time_iter(batches(), len(paths))


class PILDataset(keras.utils.PyDataset):
    """A keras PyDataset as popular Keras age-estimation repositories write it."""

    def __init__(self, paths, ages, size, batch, **kwargs):
        super().__init__(**kwargs)
        self.paths, self.ages, self.size, self.batch = paths, ages, size, batch
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return (len(self.paths) + self.batch - 1) // self.batch

    def __getitem__(self, i):
        sl = slice(i * self.batch, (i + 1) * self.batch)
        x = np.stack([_pil_load(p, self.size, self.rng) for p in self.paths[sl]])
        return x, self.ages[sl]


def pydataset_rate(df, root, size, batch, workers: int) -> float:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    ds = PILDataset([os.path.join(root, p) for p in df["path"]],
                    labels.to_label(df["age"].to_numpy(np.float32)), size, batch,
                    workers=workers, use_multiprocessing=False)
    # The adapter is what `fit` wraps a PyDataset in: worker threads + a queue.
    adapter = PyDatasetAdapter(ds, shuffle=False)
    try:
        return _time_iter(adapter.get_numpy_iterator(), len(df))
    finally:
        adapter.on_epoch_end()


def cache_epochs(df, root, size, batch) -> tuple[float, float]:
    """(first epoch including the cache build, a later epoch from the cache), in seconds."""
    cfg = pipeline.PipelineConfig(batch_size=batch, cache="memory")
    times = []
    start = time.perf_counter()
    pipe = pipeline.InputPipeline(df, root, cfg, size, training=True)  # decodes into the cache
    for epoch in range(2):
        for _ in pipe.dataset(epoch=epoch):
            pass
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    return times[0], times[1]


def main(_):
    logging.set_verbosity(logging.WARNING)
    df, root = make_images(FLAGS.work_dir, FLAGS.num_images)
    size, batch, cores = FLAGS.image_size, FLAGS.batch_size, os.cpu_count() or 1
    # Read every file once so all contenders start from the page cache.
    for p in df["path"]:
        open(os.path.join(root, p), "rb").read()
    contenders = {
        "tfdata_all_cores": lambda: tfdata_rate(df, root, size, batch, one_core=False),
        "tfdata_1_core": lambda: tfdata_rate(df, root, size, batch, one_core=True),
        "pil_loop_1_core": lambda: pil_loop_rate(df, root, size, batch),
        f"pydataset_pil_{cores}_workers": lambda: pydataset_rate(df, root, size, batch, cores),
    }
    # Rounds interleave the contenders so a slow spell of the machine hits all of them;
    # each keeps its best round.
    rates = {k: 0.0 for k in contenders}
    cache_runs = []
    for _ in range(FLAGS.repeats):
        for k, f in contenders.items():
            rates[k] = max(rates[k], f())
        cache_runs.append(cache_epochs(df, root, size, batch))
    first, second = max(cache_runs, key=lambda t: t[0] / t[1])
    a = rates["tfdata_all_cores"]
    result = {
        "images": len(df), "image_size": size, "batch_size": batch, "cores": cores,
        "images_per_s": {k: round(v, 1) for k, v in rates.items()},
        "tfdata_images_per_s_per_core": round(a / cores, 1),
        "ratios": {
            "tfdata_vs_own_1_core (target >= 1.8)": round(a / rates["tfdata_1_core"], 2),
            "tfdata_vs_pil_loop (target >= 2.5)": round(a / rates["pil_loop_1_core"], 2),
            "tfdata_vs_pydataset (target >= 2)": round(a / rates[f"pydataset_pil_{cores}_workers"], 2),
            "cache_epoch1_vs_epoch2 (target >= 5)": round(first / second, 2),
        },
        "cache_epoch_seconds": [round(first, 3), round(second, 3)],
        "cores_to_feed_5000_img_per_s": round(5000 / (a / cores), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
