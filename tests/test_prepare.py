"""Tests for age_tf.data.prepare on synthetic data and on the real wiki.mat metadata."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.io

from age_tf.data import prepare
from age_tf.errors import DataError
from age_tf.synthetic import synth


def _load(out):
    man = {s: pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test")}
    return man, pd.read_csv(os.path.join(out, "rejected.csv"))


def test_outputs_written(prepared):
    out, report = prepared
    for f in prepare.OUTPUT_FILES:
        assert os.path.getsize(os.path.join(out, f)) > 0
    assert not [f for f in os.listdir(out) if f.startswith(".prepare-")]  # scratch removed
    assert json.load(open(os.path.join(out, "report.json")))["stages"] == report["stages"]


def test_every_row_accounted_once(prepared, truth):
    out, report = prepared
    man, rej = _load(out)
    kept = pd.concat(man.values())["row"]
    assert set(kept).isdisjoint(rej["row"])
    assert sorted(list(kept) + list(rej["row"])) == list(range(len(truth)))
    assert report["stages"][-1]["kept"] == len(kept)


@pytest.mark.parametrize(
    "kind, reason",
    [("no_face", "no face found"), ("two_faces", "second face detected"),
     ("placeholder", "too small (1x1"), ("truncated", "truncated file"),
     ("missing", "missing file"), ("bad_age", "age ")],
)
def test_each_defect_rejected_with_reason(prepared, truth, kind, reason):
    out, _ = prepared
    _, rej = _load(out)
    rows = truth.loc[truth["kind"] == kind, "row"]
    assert len(rows) > 0
    got = rej.set_index("row").loc[rows, "reason"]
    # Rows can fail an earlier filter first (a low face_score); those that reach the
    # filter for their defect must all fail it for that reason.
    early = got.str.startswith("face_score")
    assert got[~early].str.startswith(reason).all(), got[~early].tolist()
    assert (~early).sum() > 0


@pytest.mark.parametrize("kind, conversion", [("grayscale", "grayscale"), ("cmyk", "cmyk"),
                                              ("png", "png-bytes")])
def test_convertible_images_kept_and_listed(prepared, truth, kind, conversion):
    out, report = prepared
    man, _ = _load(out)
    kept = pd.concat(man.values())
    rows = set(truth.loc[truth["kind"] == kind, "row"])
    mine = kept[kept["row"].isin(rows)]
    assert len(mine) > 0 and (mine["conversion"] == conversion).all()
    assert report["converted_on_load"][conversion] == len(mine)


def test_dedup_against_ground_truth(prepared, truth):
    out, report = prepared
    _, rej = _load(out)
    score = synth.score_dedup(truth, rej)
    assert score["injected_removable"] >= 40
    assert score["recall"] >= 0.95, score
    assert score["precision"] >= 0.99, score
    assert report["duplicates"]["removed"] == score["removed"]


def test_manifests_identity_disjoint_and_clean(prepared):
    out, report = prepared
    man, _ = _load(out)
    ids = [set(m["identity"]) for m in man.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for m in man.values():
        assert list(m.columns) == prepare.MANIFEST_COLUMNS
        assert m["age"].between(0, 100).all()
    sizes = np.array([len(m) for m in man.values()]) / sum(len(m) for m in man.values())
    np.testing.assert_allclose(sizes, [0.6, 0.2, 0.2], atol=0.03)


def test_sample_fraction_halves(synth_dir, tmp_path):
    r = prepare.prepare(prepare.PrepareConfig(
        mat=os.path.join(synth_dir, "imdb.mat"), images_dir=os.path.join(synth_dir, "imdb_crop"),
        out_dir=str(tmp_path), workers=1))
    before, after = r["stages"][-2]["kept"], r["stages"][-1]["kept"]
    assert after == round(before * 0.5)


def _mat_with_path(synth_dir, tmp_path, bad):
    mat = scipy.io.loadmat(os.path.join(synth_dir, "imdb.mat"))
    mat["imdb"][0, 0]["full_path"][0, 5] = np.array([bad])
    p = str(tmp_path / "imdb.mat")
    scipy.io.savemat(p, {"imdb": mat["imdb"]})
    return p


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "01/../../x.jpg"])
def test_path_escape_rejected_before_output(synth_dir, tmp_path, bad):
    mat = _mat_with_path(synth_dir, tmp_path, bad)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="imdb.mat: 1 full_path entry is empty, absolute or escape"):
        prepare.prepare(prepare.PrepareConfig(mat=mat, images_dir=os.path.join(synth_dir, "imdb_crop"),
                                              out_dir=str(out)))
    assert not out.exists()


def test_refuses_to_overwrite_then_overwrites(prepared, synth_dir):
    out, _ = prepared
    before = open(os.path.join(out, "train.csv")).read()
    cfg = prepare.PrepareConfig(mat=os.path.join(synth_dir, "imdb.mat"),
                                images_dir=os.path.join(synth_dir, "imdb_crop"), out_dir=out,
                                sample_fraction=1.0, workers=1)
    with pytest.raises(DataError, match="already holds train.csv.*--overwrite"):
        prepare.prepare(cfg)
    assert open(os.path.join(out, "train.csv")).read() == before
    cfg.overwrite = True
    prepare.prepare(cfg)
    assert open(os.path.join(out, "train.csv")).read() == before  # same seed, same result


def test_nothing_left_is_an_error(synth_dir, tmp_path):
    with pytest.raises(DataError, match="no image is left after filtering"):
        prepare.prepare(prepare.PrepareConfig(
            mat=os.path.join(synth_dir, "imdb.mat"), images_dir=os.path.join(synth_dir, "imdb_crop"),
            out_dir=str(tmp_path / "o"), min_face_score=50))
    assert not (tmp_path / "o").exists()


def test_missing_images_dir(synth_dir, tmp_path):
    with pytest.raises(DataError, match="nowhere: images folder not found"):
        prepare.prepare(prepare.PrepareConfig(
            mat=os.path.join(synth_dir, "imdb.mat"), images_dir=str(tmp_path / "nowhere"),
            out_dir=str(tmp_path / "o")))


def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.integration
def test_cli_synth_then_prepare(tmp_path):
    raw, data = str(tmp_path / "raw"), str(tmp_path / "data")
    r = _cli("age_tf.cli.synth", f"--out_dir={raw}", "--num_images=120", "--min_size=40",
             "--max_size=64", "--workers=1")
    assert r.returncode == 0, r.stderr
    r = _cli("age_tf.cli.prepare", f"--mat={raw}/imdb.mat", f"--out_dir={data}", "--workers=1")
    assert r.returncode == 0, r.stderr
    assert "splits: train" in r.stdout
    assert os.path.exists(os.path.join(data, "age_distribution.png"))
    # Again without --overwrite: a clear error, exit 2, outputs untouched.
    r = _cli("age_tf.cli.prepare", f"--mat={raw}/imdb.mat", f"--out_dir={data}")
    assert r.returncode == 2 and "--overwrite" in r.stderr


@pytest.mark.integration
@pytest.mark.parametrize("flag, message", [
    ("--split=0.5,0.5", "--split must be three"),
    ("--sample_fraction=0", "--sample_fraction=0.0: must be in (0, 1]"),
    ("--mat=/nonexistent/imdb.mat", "/nonexistent/imdb.mat: metadata file not found"),
])
def test_cli_bad_flags(tmp_path, flag, message):
    args = [f"--out_dir={tmp_path}", "--nocheck_images", "--mat=/nonexistent/imdb.mat", flag]
    r = _cli("age_tf.cli.prepare", *args)
    assert r.returncode == 2
    assert message in r.stderr


# Stage counts on the real wiki.mat, checked against an independent pure-Python count
# (anniversary counting with datetime, no pandas) when they were first written.
# Without image checks, "path listed once" follows the age range: wiki.mat lists no path twice.
WIKI_COUNTS = {
    3.0: [62328, 44312, 40216, 22596, 22580, 22580, 11290],
    1.0: [62328, 44312, 40216, 38923, 38874, 38874, 19437],
}


@pytest.mark.realdata
@pytest.mark.parametrize("score", [3.0, 1.0])
def test_real_wiki_stage_counts(real_wiki, tmp_path, score):
    report = prepare.prepare(prepare.PrepareConfig(
        mat=real_wiki, images_dir="", out_dir=str(tmp_path), check_images=False,
        min_face_score=score))
    assert [s["kept"] for s in report["stages"]] == WIKI_COUNTS[score]
    man, rej = _load(str(tmp_path))
    assert sum(len(m) for m in man.values()) + len(rej) == 62328
    sizes = [len(m) for m in man.values()]
    assert abs(sizes[0] - 0.6 * sum(sizes)) <= 2 and abs(sizes[1] - sizes[2]) <= 2


def test_fingerprints_written_once_and_reused_unless_the_file_changed(prepared, synth_dir, tmp_path):
    import shutil

    from age_tf.data import images

    out, _ = prepared
    manifest = pd.concat([pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test")])
    stored = os.path.join(out, "fingerprints.npz")
    with np.load(stored) as f:
        assert sorted(f["path"].tolist()) == sorted(manifest["path"])
    paths = manifest["path"].tolist()[:40]
    root = str(tmp_path / "crops")
    shutil.copytree(os.path.join(synth_dir, "imdb_crop"), root, copy_function=shutil.copy2)
    fresh = images.fingerprints(paths, root, None, workers=1)
    reused = images.fingerprints(paths, root, stored, workers=1)
    for a, b in zip(fresh, reused):
        np.testing.assert_array_equal(a, b)
    # A changed file is read again, not trusted: flip it left-right (another dHash).
    from PIL import Image

    changed = os.path.join(root, paths[0])
    Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed, quality=95)
    ok, dhash, _ = images.fingerprints(paths, root, stored, workers=1)
    assert ok[0] and dhash[0] == images.check_image(changed, 1).dhash != fresh[1][0]


def test_an_out_dir_that_is_a_file_is_refused_before_any_work(tmp_path):
    # Hostile-input item 11: FileExistsError after all the work.
    (tmp_path / "out").write_text("x")
    cfg = prepare.PrepareConfig(mat=str(tmp_path / "imdb.mat"), out_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="--out_dir='.*out': .*out is a file, not a folder"):
        cfg.validate()
