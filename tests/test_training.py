"""End-to-end tests of age-tf-train: CLI, strategies, resume after kill -9, export, bad flags."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from age_tf import labels, pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny and fast: 32 px, 16 images a batch, a few steps, full tuning from scratch.
TINY = ["--flagfile=configs/demo.cfg", "--image_size=32", "--batch_size=16", "--tune=full",
        "--bn_momentum=0.9", "--steps_per_epoch=4", "--cache="]


def _train_cmd(data_dir, model_dir, *extra):
    return [sys.executable, "-m", "age_tf.cli.train", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", *TINY, *extra]


def _run(cmd, timeout=300, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def _fingerprints(text):
    return [line.rsplit(": ", 1)[1].strip() for line in text.splitlines()
            if "final weights fingerprint" in line]


@pytest.fixture(scope="module")
def data_dir(prepared):
    return prepared[0]


@pytest.fixture(scope="module")
def demo_run(data_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run") / "demo")
    r = _run(_train_cmd(data_dir, model_dir, "--epochs=2"))
    assert r.returncode == 0, r.stderr[-3000:]
    return model_dir, r


def test_demo_config_trains_end_to_end(demo_run):
    model_dir, r = demo_run
    for name in ("flags.txt", "config.json", "history.csv", "metrics.json", "model.keras",
                 "best.weights.h5", "export/saved_model.pb", "checkpoints/checkpoint"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    history = pd.read_csv(os.path.join(model_dir, "history.csv"))
    assert history["epoch"].tolist() == [0, 1]
    for col in ("loss", "mae_years", "learning_rate", "val_loss", "val_mae_years", "val_plcc", "val_srocc"):
        assert col in history.columns and history[col].notna().all(), col
    assert history["learning_rate"].iloc[1] < history["learning_rate"].iloc[0]  # decays
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert metrics["epochs_completed"] == 2 and set(metrics["val"]) >= {"plcc", "srocc", "mae_years"}
    assert "--backbone=mobilenet_v2" in open(os.path.join(model_dir, "flags.txt")).read()
    assert os.listdir(os.path.join(model_dir, "logs", "validation"))
    assert "val MAE" in r.stdout


def test_export_matches_keras_model_on_both_signatures(demo_run, data_dir):
    model_dir, _ = demo_run
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    loaded = tf.saved_model.load(os.path.join(model_dir, "export"))
    manifest, images_dir = pipeline.load_manifest(data_dir, "val")
    paths = [os.path.join(images_dir, p) for p in manifest["path"][:6]]
    data = [open(p, "rb").read() for p in paths]
    images = np.stack([pipeline.resize(pipeline.decode(tf.constant(d)), 32).numpy() for d in data])
    expected = labels.to_years(np.asarray(model(images.astype("float32"))))
    got_images = loaded.signatures["serving_default"](images=tf.constant(images, tf.float32))["age"]
    got_bytes = loaded.signatures["serve_bytes"](image_bytes=tf.constant(data))["age"]
    np.testing.assert_allclose(got_images.numpy(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_bytes.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_mirrored_over_two_logical_cpus(data_dir, tmp_path):
    r = _run(_train_cmd(data_dir, str(tmp_path / "m"), "--epochs=1", "--strategy=mirrored",
                        "--num_cpu_devices=2", "--noexport"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(MirroredStrategy): 2 replica(s), global batch 16 (8 per replica)" in r.stderr


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_finish_with_identical_weights(data_dir, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], [tmp_path / f"worker{i}.log" for i in range(2)]
    try:
        for i in range(2):
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                            "task": {"type": "worker", "index": i}})}
            # Output to files, not pipes: a worker blocked on a full pipe would stall the
            # other at the next collective.
            with open(logs[i], "w") as log:
                procs.append(subprocess.Popen(
                    _train_cmd(data_dir, str(tmp_path / "mw"), "--epochs=1",
                               "--strategy=multi_worker", "--noexport"),
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 240
        for p in procs:
            p.wait(timeout=max(1, deadline - time.monotonic()))
        outs = [("", log.read_text()) for log in logs]
    finally:
        for p in procs:  # never leave a worker behind, whatever happened
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    prints = [_fingerprints(err) for _, err in outs]
    assert len(prints[0]) == 1 and prints[0] == prints[1]
    assert "strategy multi_worker (CollectiveAllReduceStrategy): 2 replica(s)" in outs[0][1]
    assert os.path.exists(tmp_path / "mw" / "metrics.json")  # the chief wrote it
    assert not os.path.exists(tmp_path / "mw" / ".workers" / "worker1")  # scratch removed


def test_kill_9_and_resume_matches_uninterrupted_run(data_dir, tmp_path):
    args = ("--epochs=3", "--noexport", "--steps_per_epoch=6")
    straight = _run(_train_cmd(data_dir, str(tmp_path / "a"), *args))
    assert straight.returncode == 0, straight.stderr[-3000:]

    run_dir = tmp_path / "b"
    proc = subprocess.Popen(_train_cmd(data_dir, str(run_dir), *args), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill once the first epoch is checkpointed, i.e. during the second epoch.
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "ckpt-1.index").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (run_dir / "metrics.json").exists()  # it really died before the end
    resumed = _run(_train_cmd(data_dir, str(run_dir), *args))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    a = json.load(open(tmp_path / "a" / "metrics.json"))
    b = json.load(open(run_dir / "metrics.json"))
    # Data order and flips are a pure function of (seed, epoch) and the CPU kernels are
    # deterministic, so the resumed run repeats the uninterrupted one; the tolerance only
    # absorbs float round-off should a kernel pick another summation order.
    for key in ("loss", "plcc", "srocc"):
        assert b["val"][key] == pytest.approx(a["val"][key], rel=1e-5, abs=1e-6), key
    assert _fingerprints(resumed.stderr) == _fingerprints(straight.stderr)
    leftovers = [f for f in os.listdir(run_dir) if ".tmp" in f]
    assert not leftovers


@pytest.mark.parametrize("extra, message", [
    (["--backbone=resnet50"], "--backbone"),
    (["--strategy=mirrored", "--num_cpu_devices=2", "--batch_size=15"],
     "--batch_size=15 is not divisible by the 2 replicas"),
    (["--monitor=val_accuracy"], "--monitor"),
    (["--strategy=multi_worker"], "needs the TF_CONFIG environment variable"),
    (["--strategy=mirrored", "--num_cpu_devices=2"], "TF_CONFIG is set but is not JSON"),
    (["--weights=/no/such.h5"], "--weights='/no/such.h5': not 'imagenet', 'none' or an existing"),
])
def test_bad_flags_give_clear_errors(data_dir, tmp_path, extra, message):
    env = {"TF_CONFIG": "{not json"} if "TF_CONFIG is set" in message else None
    r = _run(_train_cmd(data_dir, str(tmp_path / "x"), *extra), env=env)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr[-2000:]


def test_missing_data_dir(tmp_path):
    r = _run(_train_cmd(str(tmp_path / "nothing"), str(tmp_path / "x")))
    assert r.returncode == 2 and "--data_dir" in r.stderr and "age-tf-prepare" in r.stderr


def test_feature_cache_gives_the_same_weights(data_dir, tmp_path):
    args = ("--epochs=2", "--noexport", "--tune=head", "--steps_per_epoch=0")
    plain = _run(_train_cmd(data_dir, str(tmp_path / "plain"), *args))
    cached = _run(_train_cmd(data_dir, str(tmp_path / "cached"), *args, "--feature_cache"))
    assert plain.returncode == 0 and cached.returncode == 0, cached.stderr[-3000:]
    assert "feature cache:" in cached.stderr
    # Same batches, same flip draws, same frozen features: the same training, bit for bit.
    assert _fingerprints(plain.stderr) == _fingerprints(cached.stderr)
    a = pd.read_csv(tmp_path / "plain" / "history.csv")
    b = pd.read_csv(tmp_path / "cached" / "history.csv")
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-6)


def test_feature_cache_needs_head_mode(data_dir, tmp_path):
    r = _run(_train_cmd(data_dir, str(tmp_path / "x"), "--feature_cache", "--tune=full"))
    assert r.returncode == 2 and "--feature_cache needs --tune=head" in r.stderr
