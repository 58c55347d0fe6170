"""Tests for age_tf.evaluate.cross_dataset: a run scored on other releases' test splits."""

from __future__ import annotations

import json
import os

import pytest

from age_tf.data import prepare
from age_tf.evaluate import cross_dataset, evaluation
from age_tf.synthetic import synth


@pytest.fixture(scope="module")
def other_sets(tmp_path_factory):
    """Prepared synthetic UTKFace and IMDB-Clean (official split) folders."""
    out = {}
    for fmt, release, kw in (("utkface", "UTKFace", {}),
                             ("imdb_clean", "imdb-clean", {"split": "official"})):
        root = str(tmp_path_factory.mktemp(fmt))
        synth.generate(synth.SynthConfig(num_images=150, seed=8, min_size=48, max_size=80,
                                         workers=2, format=fmt), root)
        out[fmt] = os.path.join(root, "data")
        prepare.prepare(prepare.PrepareConfig(format=fmt, release_dir=os.path.join(root, release),
                                              out_dir=out[fmt], workers=2, **kw))
    return out


def test_table_scores_a_run_on_its_own_and_other_test_splits_beside_their_baselines(
        trained_run, other_sets, tmp_path):
    model_dir, data_dir = trained_run
    out = str(tmp_path / "cross.md")
    rows = cross_dataset.write(cross_dataset.CrossConfig(
        model_dirs=(model_dir,), data_dirs=(data_dir, other_sets["utkface"],
                                            other_sets["imdb_clean"]), out=out, bootstrap=50))
    tested = [r["tested_on"] for r in rows]
    assert tested.count("utkface (data)") == 3 and tested.count("imdb_clean (data)") == 3
    by = {(r["tested_on"], r["model"]): r for r in rows}
    own = [r for r in rows if r.get("own_data")]
    assert len(own) == 1 and own[0]["trained_on"] == own[0]["tested_on"]
    utk = by[("utkface (data)", "training median")]
    # Baselines are fitted on the tested set: its test images, its own count.
    assert utk["images"] == by[("utkface (data)", own[0]["model"])]["images"]
    # UTKFace names no person: its intervals resample images, IMDB-Clean's people.
    assert by[("utkface (data)", own[0]["model"])]["identities"] == utk["images"]
    text = open(out).read()
    assert "| tested on | model | trained on |" in text and "ridge on pixels" in text
    assert "images (no identities)" in text and "| identities |" in text
    assert json.load(open(str(tmp_path / "cross.json")))[0]["plcc_ci95"]


def test_a_run_trained_on_crops_is_fed_faces_cropped_from_full_photos(trained_run, other_sets):
    run = evaluation.load_run(trained_run[0])
    cfg = run.pipeline_config(data_dir=other_sets["imdb_clean"])
    from age_tf.data import sources
    assert cfg.crop_faces and cfg.face_margin == sources.RELEASE_MARGIN  # as the crops were cut
    assert not run.pipeline_config(data_dir=other_sets["utkface"]).crop_faces
