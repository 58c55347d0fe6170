"""The run folder: one trainer at a time, damaged checkpoints, a full disk, and which data
folder is a run's own."""

import errno
import json
import os
import shutil
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from age_tf.train import training
from age_tf.train.run_dir import RunDir, RunLocked, match_data


def test_a_second_trainer_of_one_run_folder_is_refused(tmp_path, tiny_config):
    # Hostile-input item 6: two trainings into one --model_dir both "succeeded".
    run = RunDir(str(tmp_path / "run"))
    with run.lock():
        with pytest.raises(RunLocked, match=rf"--model_dir={run.root} is being trained by "
                                            rf"another process \(pid {os.getpid()} on "):
            with run.lock():
                pass
        data = tmp_path / "data"
        data.mkdir()
        for split in ("train", "val"):
            (data / f"{split}.csv").write_text("path,age\na.jpg,30\n")
        with pytest.raises(RunLocked):
            training.train_and_evaluate(tiny_config(str(data), run.root))
        assert not os.path.exists(run.config)  # refused before writing anything
    with run.lock():  # released when its holder ends
        pass


def test_validation_sharing_training_images_is_refused():
    train = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"]})
    with pytest.raises(ValueError, match=r"d/val.csv shares 2 of its 2 images with train.csv"):
        training.check_disjoint("d", train, pd.DataFrame({"path": ["b.jpg", "c.jpg"]}))
    training.check_disjoint("d", train, pd.DataFrame({"path": ["z.jpg"]}))


def test_a_full_disk_is_one_line_and_its_partial_checkpoint_goes(tmp_path):
    # Hostile-input item 10: a 71-line ResourceExhaustedError, ckpt-3_temp left behind.
    run_dir = RunDir(str(tmp_path))
    os.makedirs(run_dir.checkpoints)

    def save(checkpoint_number):
        os.makedirs(os.path.join(run_dir.checkpoints, f"ckpt-{checkpoint_number}_temp"))
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    run = types.SimpleNamespace(manager=types.SimpleNamespace(save=save), dir=run_dir)
    with pytest.raises(OSError) as e:
        training._save_checkpoint(run, 2)
    assert e.value.errno == errno.ENOSPC
    assert "checkpoint of epoch 3" in str(e.value) and "epoch 2 is intact" in str(e.value)
    assert os.listdir(run_dir.checkpoints) == []


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(prepared, tmp_path,
                                                                      tiny_config, monkeypatch):
    # Hostile-input item 3: a NaN model was trained to the end and exported, exit code 0.
    real = training.run_epoch

    def diverging(run, step, epoch):
        logs = real(run, step, epoch)
        return {**logs, "loss": float("nan")} if epoch == 1 else logs

    monkeypatch.setattr(training, "run_epoch", diverging)
    cfg = tiny_config(prepared[0], str(tmp_path / "run"), epochs=3, steps_per_epoch=2)
    with pytest.raises(training.TrainingDiverged, match=r"epoch 2, step 2: the training loss "
                                                        r"is nan.*checkpoint of epoch 1 is kept"):
        training.train_and_evaluate(cfg)
    run = RunDir(cfg.model_dir)
    assert [os.path.basename(p) for p in run.checkpoint_paths()] == ["ckpt-1"]
    assert not os.path.exists(run.export) and not os.path.exists(run.metrics)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the finished tiny run (two checkpoints) to damage."""
    path = str(tmp_path / "run")
    shutil.copytree(trained_run[0], path)
    return RunDir(path), trained_run[1]


def _restore(run, data_dir, tiny_config):
    cfg = tiny_config(data_dir, run.root, steps_per_epoch=4)
    _, _, state, _ = training.create_or_restore_state(cfg, tf.distribute.get_strategy(), 4, run)
    return int(state.epoch.numpy())


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "empty"])
def test_a_damaged_checkpoint_is_named_and_the_one_before_is_used(run_copy, tiny_config, damage,
                                                                  caplog):
    # Hostile-input item 9: DataLossError / IndexError tracebacks, no fall-back.
    run, data_dir = run_copy
    newest = run.checkpoint_paths()[0]
    data = newest + ".data-00000-of-00001"
    size = os.path.getsize(data)
    if damage == "random_bytes":
        with open(data, "r+b") as f:
            f.seek(size // 2)
            f.write(np.random.default_rng(0).bytes(min(4096, size // 4)))
    else:
        with open(data, "r+b") as f:
            f.truncate(size // 2 if damage == "truncated" else 0)
    assert _restore(run, data_dir, tiny_config) == 1
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 1 and newest in said[0] and "trying the one before it" in said[0]
    assert tf.train.latest_checkpoint(run.checkpoints) == run.checkpoint_paths()[1]


def test_a_garbled_checkpoint_index_does_not_restart_the_run(run_copy, tiny_config):
    run, data_dir = run_copy
    with open(os.path.join(run.checkpoints, "checkpoint"), "w") as f:
        f.write("garbage }{")
    assert _restore(run, data_dir, tiny_config) == 2  # the newest, found by its files
    assert tf.train.latest_checkpoint(run.checkpoints) == run.checkpoint_paths()[0]


def test_what_an_interrupted_save_left_is_removed(tmp_path):
    run = RunDir(str(tmp_path))
    os.makedirs(os.path.join(run.checkpoints, "ckpt-3_temp"))
    os.makedirs(run.root + "/export.tmp")
    (tmp_path / "checkpoints" / "ckpt-2.index").write_text("kept")
    assert len(run.remove_partial_writes()) == 2
    assert os.listdir(run.checkpoints) == ["ckpt-2.index"]


def test_which_data_folder_is_a_runs_own(trained_run, tmp_path):
    run, data_dir = RunDir(trained_run[0]), trained_run[1]
    assert match_data(run, data_dir, "test").own
    copy = str(tmp_path / "copy")  # the same manifests elsewhere: still its own data
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("*.png", "*.npz"))
    assert match_data(run, copy, "test").own
    other = str(tmp_path / "other")
    shutil.copytree(data_dir, other, ignore=shutil.ignore_patterns("*.png", "*.npz"))
    test, train = (pd.read_csv(os.path.join(data_dir, f"{s}.csv")) for s in ("test", "train"))
    pd.concat([test, train.head(7)]).to_csv(os.path.join(other, "test.csv"), index=False)
    train.iloc[7:].to_csv(os.path.join(other, "train.csv"), index=False)
    m = match_data(run, other, "test")
    assert not m.own and m.seen == 7 and m.images == len(test) + 7
    assert json.load(open(run.config))["data_dir"] in m.note


def test_a_run_records_its_folders_absolute_and_may_find_its_data_moved(tmp_path, monkeypatch):
    # Hostile-input item 8: config.json kept data_dir as typed (runs/demo/data), so every
    # reader of the run from another folder looked in the wrong place.
    from age_tf.train import training
    from age_tf.train.train_config import TrainConfig

    monkeypatch.chdir(tmp_path)
    cfg = training.with_absolute_paths(TrainConfig(data_dir="data", model_dir="runs/a",
                                                   init_from="runs/head"))
    assert cfg.data_dir == str(tmp_path / "data") and cfg.model_dir == str(tmp_path / "runs/a")
    assert cfg.init_from == str(tmp_path / "runs/head") and cfg.feature_store == ""
    from age_tf.train.run_dir import RESUME_FREE

    assert "data_dir" in RESUME_FREE  # a moved folder is judged by its fingerprint


def test_the_runs_json_records_have_one_reader_that_names_a_damaged_file(tmp_path):
    """intervals.json and decisions.json are read through the run folder: absent is None
    (a run from before them); damaged or not an object is refused naming the file."""
    from age_tf.train.run_dir import RunDir

    run = RunDir(str(tmp_path))
    assert run.read_calibration() is None and run.read_decisions() is None
    (tmp_path / "intervals.json").write_text('{"method": "binned"}')
    assert run.read_calibration() == {"method": "binned"}
    (tmp_path / "decisions.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"decisions\.json: not a JSON object"):
        run.read_decisions()
    (tmp_path / "intervals.json").write_text('{"method": ')
    with pytest.raises(ValueError, match=r"intervals\.json: not readable JSON"):
        run.read_calibration()
