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
    """Prepared synthetic UTKFace, IMDB-Clean (official split) and FG-NET folders."""
    out = {}
    for fmt, release, kw in (("utkface", "UTKFace", {}),
                             ("imdb_clean", "imdb-clean", {"split": "official"}),
                             ("fgnet", "FGNET", {})):
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
                                            other_sets["imdb_clean"], other_sets["fgnet"]),
        out=out, bootstrap=50))
    tested = [r["tested_on"] for r in rows]
    assert tested.count("utkface (data)") == 3 and tested.count("imdb_clean (data)") == 3
    assert tested.count("fgnet (data)") == 3  # the benchmark's other layouts too
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
    # The rows give the largest gap between groups (gender here; race codes need more faces
    # a group than this small set has), with its interval.
    utk_line = next(line for line in text.splitlines() if line.startswith("| utkface (data) |")
                    and own[0]["model"] in line)
    assert "gender: male - female" in utk_line and " [" in utk_line
    assert json.load(open(str(tmp_path / "cross.json")))[0]["plcc_ci95"]


def test_a_run_trained_on_crops_is_fed_faces_cropped_from_full_photos(trained_run, other_sets):
    run = evaluation.load_run(trained_run[0])
    cfg = run.pipeline_config(data_dir=other_sets["imdb_clean"])
    from age_tf.data import sources
    assert cfg.crop_faces and cfg.face_margin == sources.RELEASE_MARGIN  # as the crops were cut
    assert not run.pipeline_config(data_dir=other_sets["utkface"]).crop_faces


def test_folders_are_checked_before_any_is_evaluated(tmp_path):
    # Hostile-input item 13: a folder given twice was evaluated and listed twice; a folder
    # without test.csv was found after the others were evaluated, blaming --data_dir.
    good = tmp_path / "good"
    good.mkdir()
    (good / "report.json").write_text("{}")
    (good / "test.csv").write_text("path,age\n")
    no_test = tmp_path / "no_test"
    no_test.mkdir()
    (no_test / "report.json").write_text("{}")
    out = str(tmp_path / "table.md")
    runs = (str(tmp_path / "run"),)
    cases = [((str(good), str(good) + "/"), "--data_dirs lists .* more than once"),
             ((str(good), str(no_test)), r"--data_dirs: .*no_test has no test split")]
    for data_dirs, says in cases:
        with pytest.raises(ValueError, match=says):
            cross_dataset.CrossConfig(model_dirs=runs, data_dirs=data_dirs, out=out).validate()
    with pytest.raises(ValueError, match="--model_dirs lists"):
        cross_dataset.CrossConfig(model_dirs=runs * 2, data_dirs=(str(good),), out=out).validate()
