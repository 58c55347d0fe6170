"""Tests for age_tf.evaluate.label_truth: IMDB-WIKI labels joined to IMDB-Clean's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from age_tf.errors import DataError
from age_tf.evaluate import label_truth
from age_tf.synthetic import synth

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pair"))
    synth.generate(synth.SynthConfig(num_images=200, seed=4, min_size=48, max_size=64, workers=2,
                                     mislabel_rate=0.1, format="imdb_clean"), root)
    return os.path.join(root, "imdb.mat"), os.path.join(root, "imdb-clean")


def test_join_finds_the_known_label_changes(pair):
    mat, clean = pair
    joined = label_truth.join_labels(mat, clean)
    truth = pd.read_csv(os.path.join(clean, "ground_truth.csv")).set_index("full_path")
    t = truth.loc[joined["path"]]
    assert len(joined) == len(truth)  # every listed face has its release row
    assert (joined["clean_age"].to_numpy() == t["rendered_age"].to_numpy()).all()
    assert (joined["imdb_wiki_age"].to_numpy() == t["imdb_wiki_label_age"].to_numpy()).all()
    n = label_truth.noise(joined)
    # The writer's mislabels are 20+ years off, its impossible ages further: 10+ changes.
    bad = t["kind"].isin(["mislabel", "bad_age"]).mean()
    assert n["changed_10_plus"] >= bad > 0.05 and n["changed_5_plus"] >= n["changed_10_plus"]


def test_precision_of_a_ranking_against_imdb_clean(pair, tmp_path):
    joined = label_truth.join_labels(*pair)
    wrong = joined["change"].abs() >= 10
    order = pd.concat([joined[wrong], joined[~wrong]])  # a perfect audit, then reversed
    suspects = pd.DataFrame({"path": order["path"], "age": order["imdb_wiki_age"],
                             "suspicion": np.arange(len(order))[::-1]})
    suspects.to_csv(tmp_path / "s.csv", index=False)
    p = label_truth.audit_precision(joined, str(tmp_path / "s.csv"))
    assert p["changed"] == int(wrong.sum()) and p["precision_at_k"][p["changed"]] == 1.0
    suspects.iloc[::-1].to_csv(tmp_path / "r.csv", index=False)
    assert label_truth.audit_precision(joined, str(tmp_path / "r.csv"))["precision_at_k"][10] == 0.0
    with pytest.raises(DataError, match="run age-tf-audit first"):
        label_truth.audit_precision(joined, str(tmp_path / "none.csv"))


def test_other_release_csvs_are_refused(pair, tmp_path):
    mat, clean = pair
    for name in ("imdb_train_new.csv", "imdb_valid_new.csv", "imdb_test_new.csv"):
        df = pd.read_csv(os.path.join(clean, name))
        df["filename"] = "99/" + df["filename"].str.slice(3)
        df.to_csv(tmp_path / name, index=False)
    with pytest.raises(DataError, match="no filename of its CSVs is a full_path"):
        label_truth.join_labels(mat, str(tmp_path))


def test_the_tool_prints_the_noise_shares(pair):
    mat, clean = pair
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "measure_audit_vs_imdb_clean.py")
    r = subprocess.run([sys.executable, tool, f"--mat={mat}", f"--clean_dir={clean}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"changed_10_plus"' in r.stdout
