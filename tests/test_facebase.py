"""Tests for the unified benchmark's database files (sources/facebase.py): the real files
in ../shared/data/age-benchmark (skipped where absent), the five splits, and the synthetic
release in that format with its quirks."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from age_tf.data import prepare
from age_tf.data.sources import facebase
from age_tf.errors import DataError
from age_tf.evaluate import ground_truth
from age_tf.synthetic import formats, synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "..", "shared", "data", "age-benchmark")


def _real(name: str) -> str:
    path = os.path.join(REAL, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not here (the benchmark's database files are not shipped)")
    return path


def test_agedb_rows_people_and_folders():
    table = facebase.read(_real("AgeDB.json"), "/nonexistent").table
    assert len(table) == 16488 and table["identity"].nunique() == 567
    assert (table["problem"] == "").all()
    sizes = table["folder"].astype(int).value_counts().sort_index().tolist()
    assert sizes == [1701, 1721, 1615, 1619, 1626, 1643, 1634, 1596, 1676, 1657]
    assert set(table["gender"]) == {0.0, 1.0} and table["age"].between(1, 101).all()


def test_clap2016_keeps_its_official_split_and_aligned_boxes():
    source = facebase.read(_real("CLAP2016_aligned.json"), "/nonexistent")
    table = source.table
    assert source.release["folders"] == "official"
    assert table["folder"].astype(int).value_counts().sort_index().tolist() == [4113, 1500, 1978]
    assert table["identity"].nunique() == len(table)  # no person named: each image its own
    for k in range(5):  # the official split in all five
        np.testing.assert_array_equal(
            facebase.benchmark_subsets(table["folder"].to_numpy(), "official", k),
            table["folder"].astype(int))
    corners = table["aligned_bbox"].iloc[0].split()
    assert [float(v) for v in corners] == [19, 21, 147, 1, 168, 129, 40, 149]  # 1-based, -1


def test_fgnet_is_82_people_and_has_no_benchmark_split():
    source = facebase.read(_real("FG-Net_aligned.json"), "/nonexistent")
    assert len(source.table) == 1002 and source.table["identity"].nunique() == 82
    assert source.release["folders"] == "person"
    with pytest.raises(ValueError, match="--split=whole"):
        facebase.benchmark_subsets(source.table["folder"].to_numpy(), "person", 0)


def test_the_five_splits_are_subject_exclusive_and_use_the_folders_as_listed():
    table = facebase.read(_real("AgeDB.json"), "/nonexistent").table
    folders = table["folder"].to_numpy()
    for k, listed in enumerate(facebase.BENCHMARK_SPLITS):
        subsets = facebase.benchmark_subsets(folders, "ten", k)
        people = []
        for s in range(3):
            assert set(folders[subsets == s].astype(int)) == set(listed[s])
            people.append(set(table["identity"][subsets == s]))
        assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
        assert (subsets >= 0).all()
    # Split 3 as the benchmark lists it (not a shift of the others).
    assert facebase.BENCHMARK_SPLITS[3] == ((5, 6, 7, 8, 9, 0), (1, 2), (3, 4))


@pytest.mark.integration
def test_rows_whose_images_are_absent_are_rejected_with_a_reason(tmp_path):
    """The real AgeDB file with 40 of its images present: those are kept in the split's
    folders, every other row is rejected as a missing file."""
    database = _real("AgeDB.json")
    table = facebase.read(database, str(tmp_path)).table
    rng = np.random.default_rng(0)
    present = rng.choice(len(table), 40, replace=False)
    for i in present:
        path = tmp_path / "images" / table["full_path"].iat[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        path.write_bytes(buf.getvalue())
    out = tmp_path / "prepared"
    prepare.prepare(prepare.PrepareConfig(
        format="facebase", database=database, images_dir=str(tmp_path / "images"),
        out_dir=str(out), split="benchmark", benchmark_split=1, workers=2, dedup=False))
    kept = pd.concat([pd.read_csv(out / f"{s}.csv") for s in ("train", "val", "test")])
    rejected = pd.read_csv(out / "rejected.csv")
    assert len(kept) + len(rejected) == len(table) and len(kept) >= 39
    # Every other row: its file is missing (or, before the file is looked at, AgeDB's one
    # age of 101, beyond the default --max_age).
    assert set(rejected["reason"]) <= {"missing file", "age 101 outside 0..100"}
    test = pd.read_csv(out / "test.csv")
    assert set(test["folder"]) <= {0, 1}  # split 1 tests on folders 0 and 1


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("facebase"))
    synth.generate(synth.SynthConfig(num_images=600, seed=3, min_size=48, max_size=80,
                                     workers=2, format="facebase", max_roll=30), root)
    return root


@pytest.mark.integration
def test_the_synthetic_release_is_prepared_by_one_command_quirks_rejected(release, tmp_path):
    out = tmp_path / "prepared"
    r = subprocess.run([sys.executable, "-m", "age_tf.cli.prepare", "--format=facebase",
                        f"--database={formats.facebase_database(release)}", "--split=benchmark",
                        "--benchmark_split=2", f"--out_dir={out}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "split 2: folders [4, 5, 6, 7, 8, 9] train, [0, 1] val, [2, 3] test" in r.stdout
    truth = pd.read_csv(formats.truth_path("facebase", release))
    rejected = pd.read_csv(out / "rejected.csv").set_index("row")
    expected = {"aligned_bbox of 7 numbers": "aligned_bbox needs 8 numbers",
                "age not a number": "age 'unknown' is not a number",
                "folder outside 0-9": "is not one of the benchmark's ten (0-9)"}
    for quirk, reason in expected.items():
        rows = truth.loc[truth["quirk"] == quirk, "row"]
        assert len(rows) >= 2, quirk
        assert rejected.loc[rows, "reason"].str.contains(reason, regex=False).all(), quirk
    kept = pd.concat([pd.read_csv(out / f"{s}.csv") for s in ("train", "val", "test")])
    # Each kept face's square is the one of the landmarks drawn (to the half pixel the file
    # rounds to), and people stay in their folder.
    from age_tf.data import align
    marks = ground_truth.for_rows(formats.truth_path("facebase", release), kept,
                                  tuple(f"{k}_{c}" for k in ("left_eye", "right_eye",
                                                             "mouth_left", "mouth_right")
                                        for c in "xy"))
    for (_, row), (_, m) in zip(kept.head(20).iterrows(), marks.head(20).iterrows()):
        square = align.square_from_landmarks({k: (m[f"{k}_x"], m[f"{k}_y"]) for k in (
            "left_eye", "right_eye", "mouth_left", "mouth_right")})
        assert np.abs(align.parse_corners_text(row["aligned_bbox"]) - square).max() <= 0.51
    assert kept.groupby("identity")["folder"].nunique().max() == 1


@pytest.mark.integration
def test_prepare_align_finds_landmarks_and_rejects_faces_without(tmp_path):
    """--align on a synthetic IMDB-WIKI release (no squares given): each kept face's square
    from MTCNN's landmarks lies near the square of the landmarks drawn; the others are
    rejected with the reason."""
    from age_tf.data import align

    raw = str(tmp_path / "raw")
    synth.generate(synth.SynthConfig(num_images=60, seed=2, min_size=112, max_size=160,
                                     workers=1), raw)
    out = tmp_path / "prepared"
    prepare.prepare(prepare.PrepareConfig(mat=os.path.join(raw, "imdb.mat"), out_dir=str(out),
                                          align=True, sample_fraction=1.0, workers=1,
                                          split="0.5,0.25,0.25"))
    kept = pd.concat([pd.read_csv(out / f"{s}.csv") for s in ("train", "val", "test")])
    rejected = pd.read_csv(out / "rejected.csv")
    assert len(kept) >= 5 and rejected["stage"].eq("aligned (landmarks found)").sum() >= 1
    assert rejected.loc[rejected["stage"] == "aligned (landmarks found)", "reason"].str.contains(
        "no face with landmarks").all()
    names = ("left_eye", "right_eye", "mouth_left", "mouth_right")
    marks = ground_truth.for_rows(os.path.join(raw, "ground_truth.csv"), kept,
                                  tuple(f"{k}_{c}" for k in names for c in "xy"))
    errors = []
    for text, (_, m) in zip(kept["aligned_bbox"], marks.iterrows()):
        truth = align.square_from_landmarks({k: (m[f"{k}_x"], m[f"{k}_y"]) for k in names})
        side = np.linalg.norm(truth[1] - truth[0])
        errors.append(np.abs(align.parse_corners_text(text) - truth).max() / side)
    assert np.median(errors) < 0.1
    with pytest.raises(ValueError, match="--nocheck_images"):
        prepare.PrepareConfig(mat="x.mat", out_dir=str(out), align=True,
                              check_images=False).validate()


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000 + "]" * 100_000, "not a readable JSON database file"),
    ("{\"a\": 1}", "non-empty JSON list"),
    ("[1, \"x\", {\"img_path\": \"../../etc/passwd\", \"age\": 3, \"folder\": 1}]", None),
    ("not json", "not a readable JSON"),
])
def test_hostile_database_files_are_refused_or_rejected_by_row(tmp_path, content, message):
    path = tmp_path / "db.json"
    path.write_text(content)
    if message:
        with pytest.raises(DataError, match=message):
            facebase.read(str(path), str(tmp_path))
        return
    table = facebase.read(str(path), str(tmp_path)).table
    assert list(table["problem"]) == ["entry is not a JSON object"] * 2 + [
        "img_path '../../etc/passwd' is not inside the images folder"]


def test_an_oversized_database_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text("[]")
    monkeypatch.setattr(facebase, "MAX_DATABASE_BYTES", 1)
    with pytest.raises(DataError, match="too large for a database file"):
        facebase.read(str(path), str(tmp_path))


def _small_database(tmp_path, entries_of) -> str:
    """A database file over 20 small noise images (0.jpg ... 19.jpg), entries_of(i) each."""
    import json

    rng = np.random.default_rng(1)
    for i in range(20):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.jpg", quality=90)
    path = tmp_path / "db.json"
    path.write_text(json.dumps([{"img_path": f"{i}.jpg", "age": 20 + i, "database": "Mine",
                                 **entries_of(i)} for i in range(20)]))
    return str(path)


def _prepare(tmp_path, database, **kw):
    out = tmp_path / "prepared"
    report = prepare.prepare(prepare.PrepareConfig(
        format="facebase", database=database, images_dir=str(tmp_path), out_dir=str(out),
        split="benchmark", workers=1, dedup=False, **kw))
    return report, pd.read_csv(out / "rejected.csv")


def test_aligned_squares_far_off_or_far_larger_than_the_image_are_rejected(tmp_path):
    """A square wholly off the 64 px image, and one of side 1e9 over it, crop to black or to
    a speck: rejected with the reason (both were kept before); a square reaching a little
    past the edge, as real ones do, is kept. Text in a square is named as such."""
    squares = {0: [-1e6, -1e6, -1e6 + 10, -1e6, -1e6 + 10, -1e6 + 10, -1e6, -1e6 + 10],
               1: [-5e8, -5e8, 5e8, -5e8, 5e8, 5e8, -5e8, 5e8],
               2: [-5, -5, 55, -5, 55, 55, -5, 55],
               3: ["a", 1, 2, 3, 4, 5, 6, float("nan")]}
    database = _small_database(tmp_path, lambda i: {
        "id_num": i, "folder": i % 10, **({"aligned_bbox": squares[i]} if i in squares else {})})
    _, rejected = _prepare(tmp_path, database)
    reason = rejected.set_index("path")["reason"]
    assert reason["0.jpg"] == ("aligned square (-1e+06, -1e+06, -999990, -999990) lies outside "
                               "the 64x64 photo")
    assert "has less than 1% of its area on the 64x64 photo" in reason["1.jpg"]
    assert "2.jpg" not in reason.index
    assert reason["3.jpg"] == ("aligned_bbox needs 8 numbers (four corners x, y), but 2 of its "
                               "values are not numbers (text, null or NaN)")


def test_one_person_in_every_folder_is_refused_under_the_benchmark_split(tmp_path):
    """One id_num given folders 0-9 (and the rest each their own person): --split=benchmark
    refuses, counting the person and the faces; --allow_identity_overlap prepares it, the
    report counting the same."""
    database = _small_database(tmp_path, lambda i: {
        "id_num": 0 if i < 10 else i, "folder": i % 10})
    with pytest.raises(DataError, match=r"1 person has faces in more than one subset \(train "
                                        r"6, val 2, test 2 of their faces; e\.g\. person:0\)"):
        _prepare(tmp_path, database)
    report, _ = _prepare(tmp_path, database, allow_identity_overlap=True)
    assert report["identity_overlap"] == {"people": 1, "faces": {"train": 6, "val": 2, "test": 2},
                                          "examples": ["person:0"]}
    assert "identity overlap: 1 person has faces" in prepare.summary(
        prepare.PrepareConfig(out_dir=str(tmp_path)), report)
