"""The commands run from any folder with a shipped config, by name and by path."""

import os
import subprocess
import sys

import pytest

from age_tf import config

pytestmark = pytest.mark.integration  # trains models or runs the commands


def _cli(name, *args, cwd):
    return subprocess.run([sys.executable, "-m", f"age_tf.cli.{name}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_synth_and_prepare_from_an_empty_folder_by_name_and_by_path(tmp_path):
    r = _cli("synth", "--config=synth_demo", "--num_images=40", "--min_size=32", "--max_size=40",
             "--workers=1", "--out_dir=raw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    by_name = _cli("prepare", "--config=prepare", "--mat=raw/imdb.mat", "--out_dir=a",
                   "--workers=1", cwd=tmp_path)
    # A shipped config given by path that includes another (prepare_wiki_metadata includes
    # prepare.cfg): the include is found beside it, not in the current folder.
    path = os.path.join(config.CONFIGS_DIR, "prepare_wiki_metadata.cfg")
    by_path = _cli("prepare", f"--flagfile={path}", "--mat=raw/imdb.mat", "--out_dir=b",
                   cwd=tmp_path)
    for r in (by_name, by_path):
        assert r.returncode == 0, r.stderr[-2000:]
        assert "splits: train" in r.stdout
    assert "image usable" in by_name.stdout
    assert "image usable" not in by_path.stdout  # --nocheck_images, from the file given by path
    bad = _cli("prepare", "--config=nope", "--mat=x", "--out_dir=c", cwd=tmp_path)
    assert bad.returncode == 2 and "not a shipped config" in bad.stderr
