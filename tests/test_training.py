"""End-to-end tests of age-tf-train: CLI, resume after kill -9, export, bad flags (the
strategies: test_distribution.py)."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from train_commands import ROOT
from train_commands import fingerprints as _fingerprints
from train_commands import run as _run
from train_commands import train_cmd as _train_cmd

from age_tf import labels
from age_tf.data import pipeline
from age_tf.data import prepared as prepared_lib
from age_tf.train import feature_cache, models, training

pytestmark = pytest.mark.integration  # trains models or runs the commands


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
    manifest, images_dir = prepared_lib.load_manifest(data_dir, "val")
    paths = [os.path.join(images_dir, p) for p in manifest["path"][:6]]
    data = [open(p, "rb").read() for p in paths]
    images = np.stack([pipeline.resize(pipeline.decode(tf.constant(d)), 32).numpy() for d in data])
    expected = labels.to_years(np.asarray(model(images.astype("float32"))))
    got_images = loaded.signatures["serving_default"](images=tf.constant(images, tf.float32))["age"]
    got_bytes = loaded.signatures["serve_bytes"](image_bytes=tf.constant(data))["age"]
    np.testing.assert_allclose(got_images.numpy(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_bytes.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_feature_cache_gives_the_same_weights(data_dir, tmp_path, tiny_config, monkeypatch):
    def train(name, **kw):
        keras.backend.clear_session()
        training.train_and_evaluate(tiny_config(data_dir, str(tmp_path / name), export=False,
                                                model={"tune": "head"}, **kw))
        return (pd.read_csv(tmp_path / name / "history.csv"),
                keras.models.load_model(tmp_path / name / "model.keras").get_weights())

    plain = train("plain")
    cached = train("cached", feature_cache=True, feature_store=str(tmp_path / "store"))
    # Same batches, same flip draws, same frozen features: the same training, up to the
    # rounding of convolutions over differently composed batches (bit for bit on some CPUs,
    # ~1e-7 apart on others).
    for column in ("loss", "val_loss", "val_plcc"):
        np.testing.assert_allclose(plain[0][column], cached[0][column], rtol=1e-5, atol=1e-6)
    for w_plain, w_cached in zip(plain[1], cached[1]):
        np.testing.assert_allclose(w_plain, w_cached, rtol=1e-4, atol=1e-6)
    # A later run over the same images reads the stored features: no backbone pass, and the
    # very same training.
    monkeypatch.setattr(feature_cache, "extract_features", None)  # would fail if called
    stored = train("stored", feature_cache=True, feature_store=str(tmp_path / "store"))
    pd.testing.assert_frame_equal(stored[0].drop(columns="images_per_second", errors="ignore"),
                                  cached[0].drop(columns="images_per_second", errors="ignore"))
    for w_cached, w_stored in zip(cached[1], stored[1]):
        np.testing.assert_array_equal(w_cached, w_stored)


def _kill_during(proc, marker, timeout=240):
    """SIGKILLs proc once `marker` exists (a checkpoint), i.e. in the middle of the next epoch."""
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Slow tier (90 s: four training commands): the tiny experiment's test resumes a finished
# protocol in the default suite; this one kills a run mid-epoch.
@pytest.mark.slow
def test_kill_9_resumes_to_the_same_weights_and_early_stop_and_a_finished_run_trains_nothing(
        data_dir, tmp_path):
    # The first epoch sets the reference; no later one beats it by 10, so patience 2 stops
    # the run after epoch 3 of 8. Killed during epoch 3, the resumed run must repeat the
    # uninterrupted one exactly: data order and flips are a pure function of (seed, epoch),
    # the CPU kernels are deterministic, and it must know it has already waited one epoch.
    args = ("--epochs=8", "--noexport", "--steps_per_epoch=3", "--monitor=val_loss",
            "--early_stopping_patience=2", "--early_stopping_min_delta=10")
    straight = _run(_train_cmd(data_dir, str(tmp_path / "a"), *args))
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = json.load(open(tmp_path / "a" / "metrics.json"))
    assert a["epochs_completed"] == 3 and a["stopped_by"] == "early stopping"

    run_dir = tmp_path / "b"
    proc = subprocess.Popen(_train_cmd(data_dir, str(run_dir), *args), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_during(proc, run_dir / "checkpoints" / "ckpt-2.index")  # dies during epoch 3
    assert not (run_dir / "metrics.json").exists()
    resumed = _run(_train_cmd(data_dir, str(run_dir), *args))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    b = json.load(open(run_dir / "metrics.json"))
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0, 1, 2]
    b.pop("config_digest"), a.pop("config_digest")  # of each run's own config.json
    b.pop("seconds"), a.pop("seconds")  # how long each part took: this process's, not the run's
    assert b == a  # same stop, same best epoch, same validation figures
    # The run folder's log.txt holds the details (the final weights of every command run there).
    assert (_fingerprints(open(run_dir / "log.txt").read())[-1]
            == _fingerprints(open(tmp_path / "a" / "log.txt").read())[-1])
    assert not [f for f in os.listdir(run_dir) if ".tmp" in f]  # no half-written file left
    best = os.listdir(run_dir / "best")
    assert best == [f"epoch-{a['best_epoch'] - 1:04d}.weights.h5"]

    again = _run(_train_cmd(data_dir, str(run_dir), *args))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished (early stopping); nothing to train" in again.stdout
    assert "epoch 1/8" not in again.stdout + again.stderr
    assert "epoch 4/8" not in again.stdout + again.stderr


@pytest.fixture(scope="module")
def finished_run(demo_run):
    """The demo run (--epochs=2), finished: what the refusal and --init_from tests start from
    (one run less to train in the suite)."""
    return demo_run[0]


# Commands that must stop before any work, naming the flag: (extra flags, model_dir,
# expected exit code (None: any failure), what stderr must say). model_dir "finished" is the
# finished demo run (same flags but the change), "new" a fresh folder. All run in one process
# (tests/cli_batch.py: one TensorFlow import, not one each), through the command's entry point.
REFUSALS = {
    "unknown_backbone": (["--backbone=resnet50"], "new", None, ["--backbone"]),
    "unknown_monitor": (["--monitor=val_accuracy"], "new", None, ["--monitor"]),
    "multi_worker_without_cluster": (["--strategy=multi_worker"], "new", None,
                                     ["needs the TF_CONFIG environment variable"]),
    "weights_not_a_file": (["--weights=/no/such.h5"], "new", None, [
        "--weights='/no/such.h5': not one of ('imagenet', 'standin', 'none') or an existing"]),
    "feature_cache_in_full_mode": (["--feature_cache", "--tune=full"], "new", 2,
                                   ["--feature_cache needs --tune=head"]),
    "missing_data_dir": ([], "no_data", 2, ["--data_dir", "age-tf-prepare"]),
    "resume_other_batch_size": (["--epochs=2", "--batch_size=8"], "finished", 2,
                                ["--batch_size: 16 -> 8", "--model_dir"]),
    "resume_other_epochs": (["--epochs=5"], "finished", 2, ["--epochs: 2 -> 5", "--model_dir"]),
    "resume_other_learning_rate": (["--epochs=2", "--learning_rate=0.01"], "finished", 2,
                                   ["--learning_rate", "--model_dir"]),
    "init_from_other_image_size": (["--image_size=48", "--init_from={finished}"], "new", 2,
                                   ["--image_size: 32 there, 48 here"]),
    "init_from_other_backbone": (["--backbone=efficientnet_b3", "--init_from={finished}"], "new",
                                 2, ["--backbone: 'mobilenet_v2' there, 'efficientnet_b3' here"]),
    "init_from_unfinished_run": (["--init_from={empty}"], "new", 2,
                                 ["is not a finished age-tf-train run"]),
    # Hostile-input items 3, 11, 12: bad numbers and bad manifests, named, before training.
    "learning_rate_nan": (["--learning_rate=nan"], "new", 2, ["--learning_rate=nan: must be a finite"]),
    "learning_rate_inf": (["--learning_rate=inf"], "new", 2, ["--learning_rate=inf: must be a finite"]),
    "negative_steps": (["--steps_per_epoch=-5"], "new", 2, ["--steps_per_epoch=-5: must be >= 0"]),
    "negative_min_lr_ratio": (["--min_lr_ratio=-2"], "new", 2, ["--min_lr_ratio=-2.0: must be in [0, 1]"]),
    "warmup_nan": (["--warmup_epochs=nan"], "new", 2, ["--warmup_epochs=nan"]),
    "negative_patience": (["--early_stopping_patience=-1"], "new", 2, ["--early_stopping_patience=-1"]),
    "cache_nowhere": (["--cache=/proc/nope/x"], "new", 2, ["--cache='/proc/nope/x'"]),
    "model_dir_a_file": ([], "a_file", 2, ["--model_dir=", "is a file"]),
    "nan_age": ([], "data:nan_age", 2, ["train.csv: column 'age', line 5: nan is not a number"]),
    "text_age": ([], "data:text_age", 2, ["train.csv: column 'age', line 5: 'thirty' is not a number"]),
    "age_250": ([], "data:age_250", 2, ["train.csv: column 'age', line 5: 250 is outside 0-150"]),
    "age_minus_40": ([], "data:age_minus_40", 2, ["line 5: -40 is outside 0-150"]),
    "no_age_column": ([], "data:no_age", 2, ["train.csv: no column 'age'"]),
    "no_path_column": ([], "data:no_path", 2, ["train.csv: no column 'path'"]),
    "val_is_train": ([], "data:val_is_train", 2, ["val.csv shares", "images with train.csv"]),
    # Hostile-input item 4: an empty split ended in a traceback; --crop_faces on a release
    # without boxes ran the pipeline, printed 53 TensorFlow warnings, then "0 usable images".
    "empty_val": ([], "data:empty_val", 2, ["val.csv lists no image"]),
    "crop_without_boxes": (["--crop_faces"], "data:no_boxes", 2,
                           ["--crop_faces: ", "have no face box", "train without --crop_faces"]),
}


def _bad_data(data_dir, kind, path):
    """A copy of data_dir's manifests with one defect."""
    import shutil

    shutil.copytree(data_dir, path, ignore=shutil.ignore_patterns("*.png", "*.npz"))
    train = pd.read_csv(os.path.join(data_dir, "train.csv"))
    if kind == "val_is_train":
        shutil.copy(os.path.join(data_dir, "train.csv"), os.path.join(path, "val.csv"))
        return str(path)
    if kind == "empty_val":
        pd.read_csv(os.path.join(data_dir, "val.csv")).head(0).to_csv(
            os.path.join(path, "val.csv"), index=False)
        return str(path)
    if kind == "no_boxes":  # as UTKFace's manifests: the box columns empty
        train[["face_x1", "face_y1", "face_x2", "face_y2"]] = float("nan")
        train.to_csv(os.path.join(path, "train.csv"), index=False)
        return str(path)
    if kind in ("no_age", "no_path"):
        train = train.drop(columns=[kind[3:]])
    else:
        train["age"] = train["age"].astype(object)
        train.loc[3, "age"] = {"nan_age": float("nan"), "text_age": "thirty", "age_250": 250,
                               "age_minus_40": -40}[kind]
    train.to_csv(os.path.join(path, "train.csv"), index=False)
    return str(path)


@pytest.fixture(scope="module")
def refusals(data_dir, finished_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refusals")
    (tmp / "empty").mkdir()
    cases = []
    (tmp / "a_file").write_text("not a folder")
    for name, (extra, where, _, _) in REFUSALS.items():
        model_dir = {"finished": finished_run, "a_file": str(tmp / "a_file")}.get(
            where, str(tmp / name))
        data = str(tmp / "nothing") if where == "no_data" else data_dir
        if where.startswith("data:"):
            data = _bad_data(data_dir, where[5:], tmp / f"data_{name}")
        extra = [e.format(finished=finished_run, empty=tmp / "empty") for e in extra]
        cases.append({"argv": _train_cmd(data, model_dir, *extra)[3:]})
    (tmp / "cases.json").write_text(json.dumps(cases))
    r = _run([sys.executable, os.path.join(ROOT, "tests", "cli_batch.py"), "age_tf.cli.train",
              str(tmp / "cases.json")], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(zip(REFUSALS, json.loads(r.stdout.splitlines()[-1])))


@pytest.mark.parametrize("name", REFUSALS)
def test_refusals_exit_and_name_the_flag(refusals, name):
    _, _, code, messages = REFUSALS[name]
    got = refusals[name]
    assert got["code"] != 0 if code is None else got["code"] == code, got
    for message in messages:
        assert message in got["stderr"], got["stderr"][-2000:]
    if code == 2:  # a handled error: one line, once, no traceback
        assert got["stderr"].count("error:") == 1 and "Traceback" not in got["stderr"], got


# 26 s: in the slow tier. By default the experiment test runs --init_from (its full runs start
# from their head runs) and the refusals above check what --init_from refuses.
@pytest.mark.slow
def test_init_from_starts_from_the_runs_selected_weights(data_dir, finished_run, tmp_path):
    r = _run(_train_cmd(data_dir, str(tmp_path / "next"), "--epochs=1", "--steps_per_epoch=1",
                        "--noexport", f"--init_from={finished_run}"))
    assert r.returncode == 0, r.stderr[-3000:]
    started = [l.rsplit("(weights ", 1)[1].rstrip(")") for l in r.stdout.splitlines()
               if "started from" in l]
    # The weights it started from are the finished run's selected ones, not fresh ones.
    cfg = json.load(open(os.path.join(finished_run, "config.json")))
    model = models.build_model(models.ModelConfig(**{
        **cfg["model"], "head_units": tuple(cfg["model"]["head_units"])}))
    fresh = feature_cache.weights_fingerprint(model)
    model.load_weights(os.path.join(finished_run, "best.weights.h5"))
    assert started == [feature_cache.weights_fingerprint(model)] and started[0] != fresh
    config = json.load(open(tmp_path / "next" / "config.json"))
    assert config["init_from"] == finished_run  # the run records where it started


def test_resume_refuses_changed_data(prepared, tmp_path, tiny_config):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(prepared[0], data)
    cfg = tiny_config(str(data), str(tmp_path / "r"), epochs=1, steps_per_epoch=2, export=False)
    training.train_and_evaluate(cfg)
    train = pd.read_csv(data / "train.csv")
    train.iloc[:-5].to_csv(data / "train.csv", index=False)
    with pytest.raises(ValueError, match="--data_dir: the train/val manifests"):
        training.train_and_evaluate(cfg)


def _data_with_a_broken_file(prepared_dir, tmp_path, n_train=32):
    """A prepared-data folder of n_train training rows, one of whose files is truncated."""
    import shutil

    out, images = tmp_path / "data", tmp_path / "images"
    out.mkdir()
    report = json.load(open(os.path.join(prepared_dir, "report.json")))
    src = report["inputs"]["images_dir"]
    for split, n in (("train", n_train), ("val", None)):
        df = pd.read_csv(os.path.join(prepared_dir, f"{split}.csv"))
        df = df.iloc[:n] if n else df
        for p in df["path"]:
            (images / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(src, p), images / p)
        df.to_csv(out / f"{split}.csv", index=False)
    broken = images / pd.read_csv(out / "train.csv")["path"].iloc[5]
    broken.write_bytes(broken.read_bytes()[:200])
    report["inputs"]["images_dir"] = str(images)
    (out / "report.json").write_text(json.dumps(report))
    return str(out)


# The memory cache is what the demo and the study's configs use; without a cache, the same
# endless-iterator guard in the slow tier.
@pytest.mark.parametrize("cache", [pytest.param("", marks=pytest.mark.slow), "memory"])
def test_an_undecodable_file_never_ends_an_epoch(prepared, tmp_path, cache, tiny_config):
    data = _data_with_a_broken_file(prepared[0], tmp_path)  # 32 rows, batch 16: 2 full batches
    # Learned-scale intervals: their calibration pass leaves the broken file out too.
    cfg = tiny_config(data, str(tmp_path / "run"), cache=cache, export=False,
                      interval_method="normalized")
    result = training.train_and_evaluate(cfg)
    assert result["epochs_completed"] == 2
    calibration = json.load(open(tmp_path / "run" / "intervals.json"))
    assert calibration["method"] == "normalized" and calibration["counts"] == [
        len(prepared_lib.load_manifest(data, "val")[0])]  # every val face decodes
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    # Uncached, the epoch's stream repeats to fill its 2 steps; a cache knows the 31 that
    # decode and counts 1 step from them.
    steps = 2 if not cache else 1
    assert history["images_per_second"].notna().all() and len(history) == 2
    manifest, images_dir = prepared_lib.load_manifest(data, "train")
    pipe = pipeline.InputPipeline(manifest, images_dir, cfg.pipeline, 32, training=True)
    assert training.steps_per_epoch(cfg, len(pipe)) == steps


@pytest.mark.slow  # 23 s; a NaN loss stopping training is in the default suite
def test_no_valid_monitor_value_exports_the_last_epoch_and_says_so(data_dir, tmp_path, monkeypatch,
                                                                   tiny_config):
    from age_tf import metrics

    monkeypatch.setattr(metrics, "srocc", lambda a, b: float("nan"))  # SROCC NaN every epoch
    model_dir = str(tmp_path / "run")
    # model.keras is what is checked; the SavedModel has its own tests.
    result = training.train_and_evaluate(tiny_config(
        data_dir, model_dir, steps_per_epoch=2, monitor="val_srocc", export=False))
    m = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert m["selected"].startswith("last epoch") and m["best_epoch"] == 2
    # What was exported is the trained model of the last epoch, not a fresh one.
    saved = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    assert feature_cache.weights_fingerprint(saved) == result["weights_fingerprint"]
