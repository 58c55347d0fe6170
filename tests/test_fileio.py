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
