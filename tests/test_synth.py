"""Tests for age_tf.synthetic.synth: release layout, determinism, injected defects."""

import os
import re

import numpy as np
import pytest
import scipy.io

from age_tf.data import metadata
from age_tf.errors import DataError
from age_tf.synthetic import synth


def test_mat_layout_matches_release(synth_dir):
    mat = scipy.io.loadmat(os.path.join(synth_dir, "imdb.mat"))
    s = mat["imdb"]
    assert s.shape == (1, 1)
    for field in metadata.REQUIRED_FIELDS + ("celeb_names", "celeb_id"):
        assert field in s.dtype.names
    assert s[0, 0]["photo_taken"].dtype == np.uint16
    assert s[0, 0]["full_path"].shape == (1, 600)


def test_parser_ages_equal_labels(synth_dir, truth):
    df = metadata.load_metadata(os.path.join(synth_dir, "imdb.mat"))
    assert df["age"].astype(int).tolist() == truth["label_age"].tolist()
    assert df["full_path"].tolist() == truth["full_path"].tolist()
    assert df["identity"].str.startswith("celeb:").all()


def test_file_names_like_release(truth):
    pattern = re.compile(r"^(\d\d)/nm(\d{7})_rm\d{9}_\d{4}-\d{1,2}-\d{1,2}_\d+\.jpg$")
    for p in truth["full_path"]:
        m = pattern.match(p)
        assert m and int(m.group(2)) % 100 == int(m.group(1))


def test_every_defect_kind_present(synth_dir, truth):
    df = metadata.load_metadata(os.path.join(synth_dir, "imdb.mat"))
    kinds = set(truth["kind"])
    assert set(synth.DEFECT_KINDS) | {"ok", "duplicate"} == kinds
    no_face = truth["kind"] == "no_face"
    assert np.isinf(df.loc[no_face, "face_score"]).all()
    two = truth["kind"] == "two_faces"
    assert np.isfinite(df.loc[two, "second_face_score"]).all()
    assert df.loc[~two, "second_face_score"].isna().all()
    mis = truth[truth["kind"] == "mislabel"]
    assert ((mis["label_age"] - mis["rendered_age"]).abs() >= 20).all()
    missing = truth[truth["kind"] == "missing"]["full_path"]
    assert not any(os.path.exists(os.path.join(synth_dir, "imdb_crop", p)) for p in missing)


def test_duplicates_copy_their_original(synth_dir, truth):
    dups = truth[truth["kind"] == "duplicate"]
    exact = dups[dups["dup_variant"] == "exact"].iloc[0]
    read = lambda p: open(os.path.join(synth_dir, "imdb_crop", p), "rb").read()  # noqa: E731
    assert read(exact["full_path"]) == read(exact["duplicate_of"])
    other = dups[dups["dup_variant"] != "exact"].iloc[0]
    assert read(other["full_path"]) != read(other["duplicate_of"])


def test_deterministic(tmp_path):
    cfg = synth.SynthConfig(num_images=40, seed=11, min_size=32, max_size=48, workers=1)
    synth.generate(cfg, str(tmp_path / "a"))
    cfg.workers = 2
    synth.generate(cfg, str(tmp_path / "b"))
    ga = open(tmp_path / "a" / "ground_truth.csv").read()
    assert ga == open(tmp_path / "b" / "ground_truth.csv").read()
    for line in ga.splitlines()[1:6]:
        p = line.split(",")[1]
        fa, fb = tmp_path / "a" / "imdb_crop" / p, tmp_path / "b" / "imdb_crop" / p
        assert fa.exists() == fb.exists()
        if fa.exists():
            assert fa.read_bytes() == fb.read_bytes()


def test_refuses_to_overwrite(tmp_path):
    cfg = synth.SynthConfig(num_images=20, min_size=32, max_size=40, workers=1)
    synth.generate(cfg, str(tmp_path))
    with pytest.raises(DataError, match="already holds a dataset.*--overwrite"):
        synth.generate(cfg, str(tmp_path))
    synth.generate(cfg, str(tmp_path), overwrite=True)


def test_age_distribution_imdb_like():
    ages = synth.sample_ages(np.random.default_rng(0), 20000)
    assert 0.55 < np.mean((ages >= 20) & (ages <= 50)) < 0.85
    assert ages.min() == 0 and ages.max() == 100
