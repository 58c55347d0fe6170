"""Benchmark: training images/s of the Keras models vs PyTorch/torchvision, and the head
feature cache vs running the frozen backbone every epoch.

Run by hand (not part of the test suite):
  python tools/bench_training.py                      # everything
  python tools/bench_training.py --parts=frameworks   # Keras vs torch only

frameworks: MobileNetV2 and EfficientNetB3 at 256x256, batch 32, fp32, full fine-tuning,
  measured with age_tf's own train step (the one every strategy runs) with and without
  XLA, side by side with the same architectures and head in torchvision (CPU build) run in
  a separate virtualenv (--torch_python). Target: Keras >= 1.5x torchvision for both.
feature_cache: head-only tuning through age_tf.train.training on a synthetic set at 256: one
  epoch running the backbone vs one epoch from cached features (both flips cached), and
  whether the two runs end with the same weights. Target: >= 20x faster per epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import app, flags, logging

from age_tf.data import pipeline, prepare
from age_tf.synthetic import synth
from age_tf.train import models, run_dir, train_config, training

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["frameworks", "feature_cache"], "What to measure.")
flags.DEFINE_list("backbones", ["mobilenet_v2", "efficientnet_b3"], "Backbones to time.")
flags.DEFINE_integer("image_size", 256, "Input size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("steps", 6, "Timed steps per contender (after warmup).")
flags.DEFINE_bool("xla", True, "Also time Keras with jit_compile (slow on CPU: EfficientNetB3 "
                  "with XLA at 256 takes many minutes and over 10 GB here).")
flags.DEFINE_string("torch_python", "/opt/torchbench/bin/python",
                    "Python of a virtualenv with torch==2.14.1 torchvision==0.29.1.")
flags.DEFINE_integer("cache_images", 2000, "Synthetic rows for the feature-cache part (~950 train images).")
flags.DEFINE_string("work_dir", "/tmp/age_tf_bench_training", "Scratch folder.")


def keras_rate(backbone: str, jit: bool) -> float:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    size, batch = FLAGS.image_size, FLAGS.batch_size
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = models.build_model(models.ModelConfig(backbone=backbone, image_size=size,
                                                      weights="none", tune="full"))
        opt = keras.optimizers.Adam(1e-4)
        opt.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = rng.uniform(0, 1, batch).astype(np.float32)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    iterator = iter(strategy.distribute_datasets_from_function(lambda ctx: ds))
    step = training._make_train_step(strategy, model, opt, batch, jit)
    for _ in range(2):  # trace / compile
        step(iterator).numpy()
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        loss = step(iterator)
    loss.numpy()
    return FLAGS.steps * batch / (time.perf_counter() - start)


def torch_rate(backbone: str) -> float | None:
    if not os.path.exists(FLAGS.torch_python):
        logging.warning("no torch virtualenv at %s; see tools/torch_baseline.py", FLAGS.torch_python)
        return None
    script = os.path.join(os.path.dirname(__file__), "torch_baseline.py")
    out = subprocess.run([FLAGS.torch_python, script, f"--backbone={backbone}",
                          f"--image_size={FLAGS.image_size}", f"--batch_size={FLAGS.batch_size}",
                          f"--steps={FLAGS.steps}"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def frameworks() -> dict:
    result = {}
    for backbone in FLAGS.backbones:
        row = {"keras": keras_rate(backbone, jit=False)}
        if FLAGS.xla:
            row["keras_xla"] = keras_rate(backbone, jit=True)
        row["torchvision"] = torch_rate(backbone)
        if row["torchvision"]:
            row["keras_vs_torchvision (target >= 1.5)"] = row["keras"] / row["torchvision"]
            if FLAGS.xla:
                row["keras_xla_vs_torchvision"] = row["keras_xla"] / row["torchvision"]
        result[backbone] = {k: round(v, 2) if v else v for k, v in row.items()}
        print(json.dumps({backbone: result[backbone]}), flush=True)  # partial results survive
    return result


def feature_cache() -> dict:
    raw = os.path.join(FLAGS.work_dir, "raw")
    data = os.path.join(FLAGS.work_dir, "data")
    if not os.path.exists(os.path.join(data, "train.csv")):
        shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
        synth.generate(synth.SynthConfig(num_images=FLAGS.cache_images, seed=1, min_size=200,
                                         max_size=400), raw)
        prepare.prepare(prepare.PrepareConfig(mat=os.path.join(raw, "imdb.mat"),
                                              images_dir=os.path.join(raw, "imdb_crop"),
                                              out_dir=data, sample_fraction=1.0))
    runs = {}
    for cached in (False, True):
        model_dir = os.path.join(FLAGS.work_dir, f"run_cache_{cached}")
        shutil.rmtree(model_dir, ignore_errors=True)
        keras.backend.clear_session()
        cfg = train_config.TrainConfig(
            data_dir=data, model_dir=model_dir,
            model=models.ModelConfig(backbone="mobilenet_v2", image_size=FLAGS.image_size,
                                     weights="none", tune="head"),
            pipeline=pipeline.PipelineConfig(batch_size=FLAGS.batch_size, cache="memory",
                                             deterministic=True),
            epochs=3, strategy="one_device", export=False, log_every=0, feature_cache=cached)
        start = time.perf_counter()
        result = training.train_and_evaluate(cfg)
        total = time.perf_counter() - start
        history = pd.read_csv(run_dir.RunDir(model_dir).history)
        runs[cached] = {"total_seconds": total, "history": history,
                        "fingerprint": result["weights_fingerprint"]}
    n_train = len(pd.read_csv(os.path.join(data, "train.csv")))
    # Later epochs: the image run reads its memory cache, so both sides show steady state.
    steady = lambda h: float(h["images_per_second"].iloc[1:].mean())  # noqa: E731
    plain, cached = steady(runs[False]["history"]), steady(runs[True]["history"])
    return {
        "train_images": n_train,
        "epoch_images_per_second_backbone_every_epoch": round(plain, 1),
        "epoch_images_per_second_from_feature_cache": round(cached, 1),
        "epoch_speedup (target >= 20)": round(cached / plain, 1),
        "total_seconds_3_epochs": {"backbone_every_epoch": round(runs[False]["total_seconds"], 1),
                                   "feature_cache_incl_extraction": round(runs[True]["total_seconds"], 1)},
        "same_final_weights": runs[False]["fingerprint"] == runs[True]["fingerprint"],
        "val_loss_last_epoch": [float(runs[c]["history"]["val_loss"].iloc[-1]) for c in (False, True)],
    }


def main(_):
    logging.set_verbosity(logging.WARNING)
    out = {"image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size, "cores": os.cpu_count()}
    if "frameworks" in FLAGS.parts:
        out["frameworks_images_per_second"] = frameworks()
    if "feature_cache" in FLAGS.parts:
        out["feature_cache"] = feature_cache()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
