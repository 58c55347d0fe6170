"""Folder checks before work and the clean-up of what a killed process left."""

import os
import subprocess
import sys

import pytest

from age_tf import fileio


def test_a_file_or_an_unwritable_folder_is_refused_naming_the_flag(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="--out_dir='.*afile': .*afile is a file"):
        fileio.check_writable_dir(str(tmp_path / "afile"), "out_dir")
    fileio.check_writable_dir(str(tmp_path / "new" / "deeper"), "out_dir")  # can be made
    # Root writes anywhere by permission; a read-only mount is what refuses it.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="--model_dir='.*run'.* is not writable"):
        fileio.check_writable_dir(str(tmp_path / "run"), "model_dir")


def test_stale_temp_folders_of_dead_processes_go_and_a_live_ones_stay(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    for name in (f".prepare-{dead}-abc", f".prepare-{os.getpid()}-def", ".prepare-xyz", "keep"):
        (tmp_path / name).mkdir()
    removed = fileio.remove_stale_temp_dirs(str(tmp_path), ".prepare-")
    assert sorted(removed) == sorted([f".prepare-{dead}-abc", ".prepare-xyz"])
    assert sorted(os.listdir(tmp_path)) == sorted([f".prepare-{os.getpid()}-def", "keep"])


def test_an_existing_output_is_never_replaced_without_overwrite(tmp_path):
    # Hostile-input item 9: age-tf-export --out=existing.tflite (and its card) and
    # age-tf-cross-dataset --out=existing.md were replaced without a word.
    from age_tf.evaluate import cross_dataset, model_cost, report

    table = tmp_path / "table.md"
    table.write_text("mine")
    with pytest.raises(ValueError, match=r"--out='.*table.md': .*table.md already exists; pass "
                                         "--overwrite"):
        fileio.check_new_file(str(table), "out", overwrite=False)
    fileio.check_new_file(str(table), "out", overwrite=True)  # asked for
    fileio.check_new_file(str(tmp_path / "new.md"), "out", overwrite=False)
    card = tmp_path / "age.tflite.json"
    card.write_text("{}")  # only the file written beside it exists
    with pytest.raises(ValueError, match="age.tflite.json already exists"):
        fileio.check_new_file(str(tmp_path / "age.tflite"), "out", False, (str(card),))
    with pytest.raises(ValueError, match="is a folder"):
        fileio.check_new_file(str(tmp_path), "out", overwrite=True)
    for cfg in (report.ReportConfig(runs=("r",), out=str(table)),
                model_cost.ModelCostConfig(output=str(table))):
        with pytest.raises(ValueError, match="--overwrite"):
            cfg.validate()
    data = tmp_path / "data"
    data.mkdir()
    (data / "report.json").write_text("{}")
    (data / "test.csv").write_text("path,age\n")
    with pytest.raises(ValueError, match="--overwrite"):
        cross_dataset.CrossConfig(model_dirs=("r",), data_dirs=(str(data),),
                                  out=str(table)).validate()
    assert table.read_text() == "mine"
