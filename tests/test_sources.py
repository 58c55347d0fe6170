"""Tests for age_tf.data.sources and synthetic.formats: each release layout written by the
generator, prepared by one call, its label conventions, quirks and official split kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from age_tf.data import prepare, sources
from age_tf.errors import DataError
from age_tf.evaluate import ground_truth
from age_tf.synthetic import formats, synth

pytestmark = pytest.mark.integration
RELEASE = {"imdb_clean": "imdb-clean", "appa_real": "appa-real-release", "utkface": "UTKFace",
           "agedb": "AgeDB", "fgnet": "FGNET", "afad": "AFAD-Full", "cacd": "cacd",
           "morph": "MORPH", "facebase": "facebase"}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Each format's synthetic release from the same 160 rendered rows."""
    out = {}
    for fmt in sources.FORMATS:
        root = str(tmp_path_factory.mktemp(fmt))
        synth.generate(synth.SynthConfig(num_images=160, seed=5, min_size=48, max_size=80,
                                         workers=2, format=fmt), root)
        out[fmt] = root
    return out


def _prepare(releases, tmp_path, fmt, **kw):
    root = releases[fmt]
    where = (dict(mat=os.path.join(root, "imdb.mat")) if fmt == "imdb_wiki" else
             dict(database=formats.facebase_database(root)) if fmt == "facebase" else
             dict(release_dir=os.path.join(root, RELEASE[fmt])))
    out = str(tmp_path / f"prep_{fmt}")
    report = prepare.prepare(prepare.PrepareConfig(format=fmt, out_dir=out, workers=2,
                                                   **where, **kw))
    manifests = {s: pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test")}
    rejected = pd.read_csv(os.path.join(out, "rejected.csv"))
    return out, report, manifests, rejected


def _truth(releases, fmt):
    return formats.truth_path(fmt, releases[fmt])


@pytest.mark.parametrize("fmt", sources.FORMATS)
def test_every_format_is_prepared_and_every_row_is_kept_or_rejected_with_a_reason(
        releases, tmp_path, fmt):
    _, report, manifests, rejected = _prepare(releases, tmp_path, fmt)
    kept = pd.concat(manifests.values())
    assert report["inputs"]["format"] == fmt and report["inputs"]["release"]["synthetic"]
    assert len(kept) > (50 if fmt == "imdb_wiki" else 100) and (rejected["reason"].str.len() > 0).all()
    rows = report["inputs"]["rows"]
    if fmt != "imdb_wiki":  # imdb_wiki keeps half (the study's sample); the rest are whole
        assert len(kept) + len(rejected) == rows
        assert sorted(set(kept["row"]) | set(rejected["row"])) == list(range(rows))
    # The truth the writer recorded is that of these very rows (row and path agree).
    truth = ground_truth.for_rows(_truth(releases, fmt), kept, ("rendered_age", "label_age", "kind"))
    clean = truth["kind"].isin(["ok", "grayscale", "png", "cmyk"]).to_numpy()
    assert (kept["age"].to_numpy()[clean] == truth["label_age"].to_numpy()[clean]).all()
    # Every release's truth records the groups each face was rendered in, and the release's
    # own gender label (where it has one) is that rendered gender.
    groups = ground_truth.for_rows(_truth(releases, fmt), kept, ("gender", "skin_tone"))
    assert set(groups["skin_tone"]) == {"I-II", "III-IV", "V-VI"}
    known = kept["gender"].isin([0, 1]).to_numpy() & clean
    assert set(groups["gender"]) <= {"male", "female"}
    if fmt not in ("appa_real", "fgnet", "cacd"):  # releases without a gender label
        named = np.where(kept["gender"].to_numpy()[known] == 1, "male", "female")
        assert (named == groups["gender"].to_numpy()[known]).mean() > 0.95
    # Duplicates the writer made are gone (one of each group stays).
    assert report["duplicates"]["removed"] >= 3
    assert kept["label_source"].str.startswith(fmt).all()


def test_utkface_gender_code_is_the_reverse_of_imdb_wiki(releases, tmp_path):
    _, _, manifests, rejected = _prepare(releases, tmp_path, "utkface")
    kept = pd.concat(manifests.values())
    code = kept["path"].str.split("_").str[1].astype(int)
    # UTKFace: 0 male, 1 female; manifests follow IMDB-WIKI's 1 male, 0 female.
    assert ((code == 0) == (kept["gender"] == 1)).all() and ((code == 1) == (kept["gender"] == 0)).all()
    # Genders agree with the rendered person's (the same identity as in the IMDB-WIKI writer).
    reasons = " | ".join(rejected["reason"])
    assert "field(s), not age_gender_race_date&time" in reasons or "gender code" in reasons


def test_utkface_and_agedb_names_the_parser_refuses_are_rejected_never_raised(tmp_path):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    from PIL import Image
    names = ["25_0_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
             "x_0_1_2017.jpg.chip.jpg", "30_3_0_2017.jpg.chip.jpg", "40_1_9_2017.jpg",
             "50_1_2_20170109142408075.jpg"]
    for n in names:
        Image.new("RGB", (64, 64), (90, 80, 70)).save(folder / n)
    (folder / "notes.txt").write_text("not an image")
    t = sources.utkface.read(str(folder)).table.set_index("full_path")
    assert t.loc[names[0], "problem"] == "" and t.loc[names[0], "gender"] == 1.0
    assert "1 field" not in t.loc[names[1], "problem"] and "3 field(s)" in t.loc[names[1], "problem"]
    assert "age 'x'" in t.loc[names[2], "problem"]
    assert "gender code '3'" in t.loc[names[3], "problem"]
    assert "race code '9'" in t.loc[names[4], "problem"]
    assert t.loc[names[5], "problem"] == "" and t.loc[names[5], "gender"] == 0.0
    assert "notes.txt" not in t.index
    agedb = tmp_path / "AgeDB"
    agedb.mkdir()
    names = ["0_MariaCallas_35_f.jpg", "1_Jean_Luc_Picard_60_m.jpg", "2__35_m.jpg",
             "3_Bob_NA_m.jpg", "4_Bob_35_x.jpg", "5_Bob.jpg"]
    for n in names:
        Image.new("RGB", (64, 64)).save(agedb / n)
    t = sources.agedb.read(str(agedb)).table.set_index("full_path")
    assert t.loc[names[0], "identity"] == "name:MariaCallas" and t.loc[names[0], "gender"] == 0.0
    assert t.loc[names[1], "identity"] == "name:Jean_Luc_Picard" and t.loc[names[1], "age"] == 60
    assert "no name" in t.loc[names[2], "problem"]
    assert "age 'NA'" in t.loc[names[3], "problem"]
    assert "neither m nor f" in t.loc[names[4], "problem"]
    assert "2 field(s)" in t.loc[names[5], "problem"]


def test_appa_real_label_is_real_or_apparent_age(releases, tmp_path):
    truth = pd.read_csv(_truth(releases, "appa_real")).set_index("full_path")
    _, report, real, _ = _prepare(releases, tmp_path, "appa_real", split="official")
    _, _, apparent, _ = _prepare(releases, tmp_path / "a", "appa_real", split="official",
                                 label="apparent")
    r, a = (pd.concat(m.values()).set_index("path") for m in (real, apparent))
    # Impossible real ages (the writer's bad_age rows) are rejected; their ratings are not.
    assert set(r.index) < set(a.index)
    assert (r["age"] == truth.loc[r.index, "label_age"]).all()
    assert np.allclose(a["age"], truth.loc[a.index, "apparent_age_avg"])
    assert (a["age"] != np.round(a["age"])).any()  # a mean of ratings, kept unrounded
    assert a["label_source"].iloc[0] == "appa_real: apparent_age_avg"
    assert report["identities"].startswith("none in the release")
    with pytest.raises(ValueError, match="--label=apparent: only appa_real"):
        _prepare(releases, tmp_path / "b", "utkface", label="apparent")


@pytest.mark.parametrize("fmt", ["imdb_clean", "appa_real"])
def test_official_split_is_kept(releases, tmp_path, fmt):
    _, report, manifests, _ = _prepare(releases, tmp_path, fmt, split="official")
    truth = pd.read_csv(_truth(releases, fmt)).set_index("full_path")
    names = {"train": "train", "val": "valid", "test": "test"}
    for split, m in manifests.items():
        assert len(m) and (truth.loc[m["path"], "split"] == names[split]).all()
    assert report["split"] == "the release's own subsets"


def test_split_official_is_refused_for_a_release_without_one(releases, tmp_path):
    with pytest.raises(ValueError, match="--split=official: agedb has no official split"):
        _prepare(releases, tmp_path, "agedb", split="official")


def test_the_other_formats_input_flag_is_refused(releases, tmp_path):
    with pytest.raises(ValueError, match="--mat is IMDB-WIKI's; --format=utkface"):
        _prepare(releases, tmp_path, "utkface", mat="imdb.mat")
    with pytest.raises(ValueError, match="--release_dir is for the other formats"):
        _prepare(releases, tmp_path, "imdb_wiki", release_dir=releases["agedb"])


def test_imdb_clean_face_cropped_with_the_release_margin_lands_on_the_rendered_crop(
        releases, tmp_path):
    """The CSV's box + 0.4 of its side per side is the crop the IMDB-WIKI release cut."""
    import tensorflow as tf

    from age_tf.data import pipeline

    out, report, manifests, _ = _prepare(releases, tmp_path, "imdb_clean", split="official")
    assert report["framing"] == "full photos"
    truth = pd.read_csv(_truth(releases, "imdb_clean")).set_index("full_path")
    m = pd.concat(manifests.values())
    w = m["face_x2"] - m["face_x1"]
    left = m["face_x1"] - 1 - sources.RELEASE_MARGIN * w  # 0-based, as pipeline.face_box
    top = m["face_y1"] - 1 - sources.RELEASE_MARGIN * (m["face_y2"] - m["face_y1"])
    t = truth.loc[m["path"]]
    assert np.abs(left.to_numpy() - t["paste_x"].to_numpy()).max() <= 1
    assert np.abs(top.to_numpy() - t["paste_y"].to_numpy()).max() <= 1
    # And the pixels: the crop from the full photo is the release's crop, and one shifted by
    # two pixels is not as close.
    for row in m[t["kind"].to_numpy() == "ok"].head(5).itertuples():
        photo = tf.constant(pipeline.read_image(
            os.path.join(releases["imdb_clean"], "imdb", row.path)))
        crop = pipeline.read_image(os.path.join(releases["imdb_clean"], "imdb_crop", row.path))
        x, y = t.loc[row.path, "paste_x"], t.loc[row.path, "paste_y"]
        box = np.array([row.face_x1, row.face_y1, row.face_x2, row.face_y2], np.float32)
        ref = pipeline.resize(tf.constant(crop), 64, box - [x, y, x, y], sources.RELEASE_MARGIN)
        # The margin box spans side + 1 pixel centres and its corner is rounded: its edge rows
        # and columns can fall a hair outside the crop (black there), on the scene in the photo.
        ref = ref.numpy()[1:-1, 1:-1].astype(float)

        def error(shift):
            face = pipeline.resize(photo, 64, box + shift, sources.RELEASE_MARGIN).numpy()
            return np.abs(face[1:-1, 1:-1] - ref).mean()

        assert error(0) < min(error(np.array([d, 0, d, 0], np.float32)) for d in (-2, 2)), row.path
        assert error(0) < 10, row.path  # two JPEG encodings at 48-80 px: a few levels


def test_imdb_clean_training_without_crop_faces_is_refused(releases, tmp_path):
    from age_tf.train.train_config import TrainConfig

    out, *_ = _prepare(releases, tmp_path, "imdb_clean", split="official")
    cfg = TrainConfig(data_dir=out, model_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="holds full photos.*--crop_faces"):
        cfg.validate()


def test_release_csv_problems_name_the_file(releases, tmp_path):
    src = os.path.join(releases["appa_real"], RELEASE["appa_real"])
    bad = tmp_path / "appa"
    import shutil
    shutil.copytree(src, bad)
    avg = pd.read_csv(bad / "gt_avg_valid.csv", dtype=str)
    avg.loc[0, "real_age"] = "unknown"
    avg.to_csv(bad / "gt_avg_valid.csv", index=False)
    t = sources.appa_real.read(str(bad), "real").table
    assert (t["problem"] == "real_age 'unknown' is not a number").sum() == 1
    avg.drop(columns=["real_age"]).to_csv(bad / "gt_avg_valid.csv", index=False)
    with pytest.raises(DataError, match=r"gt_avg_valid.csv: no column 'real_age'"):
        sources.appa_real.read(str(bad), "real")
    shutil.copy(os.path.join(src, "gt_avg_valid.csv"), bad / "gt_avg_valid.csv")
    os.remove(bad / "gt_avg_test.csv")
    with pytest.raises(DataError, match=r"gt_avg_test.csv: not found"):
        sources.appa_real.read(str(bad), "real")


def test_synth_refuses_to_overwrite_each_layout(releases):
    for fmt in ("utkface", "imdb_clean"):
        with pytest.raises(DataError, match="already holds a dataset"):
            synth.generate(synth.SynthConfig(num_images=20, format=fmt), releases[fmt])


def test_one_command_writes_and_one_prepares_a_release(tmp_path):
    """age-tf-synth --format=agedb, then age-tf-prepare --format=agedb, as a user types them."""
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    run = lambda *a: subprocess.run([sys.executable, "-m", *a], capture_output=True, text=True,
                                    env=env, timeout=300)
    r = run("age_tf.cli.synth", "--format=agedb", "--num_images=60", f"--out_dir={tmp_path}/raw",
            "--min_size=48", "--max_size=64")
    assert r.returncode == 0, r.stderr
    r = run("age_tf.cli.prepare", "--format=agedb", f"--release_dir={tmp_path}/raw/AgeDB",
            f"--out_dir={tmp_path}/data")
    assert r.returncode == 0, r.stderr
    assert "name and label read" in r.stdout
    report = json.load(open(tmp_path / "data" / "report.json"))
    assert report["identities"] == "the name in the file name"
    r = run("age_tf.cli.prepare", "--format=agedb", f"--out_dir={tmp_path}/data2")
    assert r.returncode == 2 and "--format=agedb needs --release_dir" in r.stderr


def test_a_column_named_twice_is_refused_by_name(tmp_path):
    # Hostile-input item 6: pandas renamed the second 'age' to 'age.1' and the first was used.
    path = tmp_path / "train.csv"
    path.write_text("path,age,identity,age\na.jpg,30,1,31\n")
    with pytest.raises(DataError, match=r"train.csv: column 'age' appears more than once"):
        sources.checked_csv(str(path), ("path", "age"), 1 << 20, "manifest CSV", "fix it")
    path.write_text("path,age,age.1\na.jpg,30,31\n")  # distinct names are fine
    assert list(sources.checked_csv(str(path), ("path", "age"), 1 << 20, "m", "f")["age"]) == [30]


def test_face_boxes_off_the_photo_are_rejected_with_a_reason(releases, tmp_path):
    # Hostile-input item 5: a box wholly outside its photo ((-100,-100,-50,-50) in a 493x318
    # photo; 1e9) was kept and cut into a black training crop.
    import shutil

    root = tmp_path / "ic"
    shutil.copytree(os.path.join(releases["imdb_clean"], RELEASE["imdb_clean"]), root / "csvs")
    csv = root / "csvs" / sources.imdb_clean.CSVS["train"]
    df = pd.read_csv(csv, dtype=str)
    photos = os.path.join(releases["imdb_clean"], "imdb")
    clean = pd.read_csv(_truth(releases, "imdb_clean"))
    fine = set(clean.loc[clean["kind"] == "ok", "full_path"])
    rows = [i for i, f in enumerate(df["filename"])
            if f in fine and os.path.exists(os.path.join(photos, f))][:4]
    # Off the photo, far off it, no area, and a box a million times the photo (kept in
    # train.csv before: it crops the photo to a speck).
    boxes = (["-100", "-100", "-50", "-50"], ["1e9", "1e9", "2e9", "2e9"], ["10", "10", "10", "40"],
             ["-1e9", "-1e9", "1e9", "1e9"])
    for i, box in zip(rows, boxes):
        df.loc[i, ["x_min", "y_min", "x_max", "y_max"]] = box
    df.to_csv(csv, index=False)
    out = str(tmp_path / "prep")
    prepare.prepare(prepare.PrepareConfig(
        format="imdb_clean", release_dir=str(root / "csvs"), out_dir=out, workers=2,
        images_dir=os.path.join(releases["imdb_clean"], "imdb")))
    rejected = pd.read_csv(os.path.join(out, "rejected.csv"))
    off = rejected[rejected["stage"] == "face box on the photo"]
    names = set(df.loc[rows, "filename"])
    assert set(off["path"]) == set(df.loc[rows[:2] + rows[3:], "filename"]), off
    assert off["reason"].str.contains("lies outside the").sum() == 2
    assert off["reason"].str.contains("has less than 1% of its area on the").sum() == 1
    flat = rejected[rejected["path"] == df.loc[rows[2], "filename"]]  # no area: the adapter's
    assert list(flat["reason"]) == ["face box x_min,y_min,x_max,y_max is not a box"]
    kept = pd.concat(pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test"))
    assert not names & set(kept["path"])


def test_links_and_special_files_in_a_release_are_rejected_never_read(releases, tmp_path):
    # Hostile-input items 1 and 2: a link to a face outside the release got that face into
    # val.csv; links to /etc/passwd were opened; a dangling link appeared nowhere; a link to
    # /dev/zero was read without limit; a FIFO blocked prepare forever; a 50 GB sparse .jpg
    # ended in "error: " with an empty message.
    import shutil

    release = tmp_path / "UTKFace"
    shutil.copytree(os.path.join(releases["utkface"], RELEASE["utkface"]), release)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    face = sorted(release.iterdir())[0]
    shutil.copy(face, outside / "face.jpg")
    planted = {
        "30_0_0_20170101000001.jpg.chip.jpg": ("link", outside / "face.jpg"),
        "31_0_0_20170101000002.jpg.chip.jpg": ("link", "/etc/passwd"),
        "32_0_0_20170101000003.jpg.chip.jpg": ("link", tmp_path / "nothing.jpg"),
        "33_0_0_20170101000004.jpg.chip.jpg": ("link", "/dev/zero"),
        "34_0_0_20170101000005.jpg.chip.jpg": ("fifo", None),
        "35_0_0_20170101000006.jpg.chip.jpg": ("sparse", 50 << 30),
    }
    for name, (kind, target) in planted.items():
        if kind == "link":
            os.symlink(target, release / name)
        elif kind == "fifo":
            os.mkfifo(release / name)
        else:
            with open(release / name, "wb") as f:
                f.truncate(target)
    out = str(tmp_path / "prep")
    prepare.prepare(prepare.PrepareConfig(format="utkface", release_dir=str(release),
                                          out_dir=out, workers=1))
    rejected = pd.read_csv(os.path.join(out, "rejected.csv")).set_index("path")
    reasons = {name: rejected.loc[name, "reason"] for name in planted}
    assert "resolves outside the images folder" in reasons["30_0_0_20170101000001.jpg.chip.jpg"]
    assert "resolves outside the images folder" in reasons["31_0_0_20170101000002.jpg.chip.jpg"]
    assert "dangling symbolic link" in reasons["32_0_0_20170101000003.jpg.chip.jpg"]
    assert "resolves outside" in reasons["33_0_0_20170101000004.jpg.chip.jpg"]
    assert "not a regular file" in reasons["34_0_0_20170101000005.jpg.chip.jpg"]
    assert "too large for an image file" in reasons["35_0_0_20170101000006.jpg.chip.jpg"]
    kept = pd.concat(pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test"))
    assert not set(planted) & set(kept["path"])


def test_predict_refuses_a_fifo_or_an_endless_file_without_reading_it(tmp_path):
    from age_tf.serve import photos

    os.mkfifo(tmp_path / "fifo.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    for name, says in (("fifo.jpg", "not a regular file"), ("zero.jpg", "not a regular file")):
        with pytest.raises(ValueError, match=says):
            photos.photo_size(str(tmp_path / name))
    with pytest.raises(FileNotFoundError):
        photos.photo_size(str(tmp_path / "none.jpg"))


def test_names_that_cannot_be_read_are_rejected_rows_not_a_failed_release(releases, tmp_path):
    # Hostile-input item 3: a UTKFace name '²_0_0_x.jpg.chip.jpg' or an AgeDB age '²³' failed
    # the whole release (could not convert string to float: '²'); a name that is not UTF-8
    # failed at the CSV write after all the work.
    import shutil

    release = tmp_path / "UTKFace"
    shutil.copytree(os.path.join(releases["utkface"], RELEASE["utkface"]), release)
    face = sorted(release.iterdir())[0]
    shutil.copy(face, release / "\u00b2_0_0_20170101000001.jpg.chip.jpg")
    bad_bytes = os.fsdecode(b"40_0_0_2017\xff0101.jpg.chip.jpg")
    shutil.copy(face, os.path.join(str(release), bad_bytes))
    out = str(tmp_path / "prep")
    prepare.prepare(prepare.PrepareConfig(format="utkface", release_dir=str(release),
                                          out_dir=out, workers=1))
    rejected = pd.read_csv(os.path.join(out, "rejected.csv"))
    reasons = dict(zip(rejected["path"], rejected["reason"]))
    assert reasons["\u00b2_0_0_20170101000001.jpg.chip.jpg"] == "age '\u00b2' is not a number"
    assert reasons["40_0_0_2017\\xff0101.jpg.chip.jpg"].endswith("is not UTF-8")
    assert sources.agedb.fields_of("90006_JaneDoe_\u00b2\u00b3_m.jpg")[3] == "age '\u00b2\u00b3' is not a number"
    assert "NUL byte" in sources.name_problem("a\x00b.jpg")


def test_without_image_checks_a_path_listed_twice_is_kept_once(releases, tmp_path):
    # Hostile-input item 7: --nocheck_images wrote a train.csv listing one path three times.
    import shutil

    csvs = tmp_path / "csvs"
    shutil.copytree(os.path.join(releases["imdb_clean"], RELEASE["imdb_clean"]), csvs)
    train = csvs / sources.imdb_clean.CSVS["train"]
    df = pd.read_csv(train, dtype=str)
    twice = df.iloc[[0, 0, 0]].assign(age=["20", "40", "60"])
    pd.concat([df, twice]).to_csv(train, index=False)
    out = str(tmp_path / "prep")
    prepare.prepare(prepare.PrepareConfig(
        format="imdb_clean", release_dir=str(csvs), out_dir=out, check_images=False,
        images_dir=os.path.join(releases["imdb_clean"], "imdb")))
    kept = pd.concat(pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test"))
    assert not kept["path"].duplicated().any()
    rejected = pd.read_csv(os.path.join(out, "rejected.csv"))
    assert (rejected["reason"] == "the same path on an earlier row").sum() == 3


def test_a_release_one_folder_down_is_named(releases):
    # First-screen item: age-tf-synth --format=utkface --out_dir=utk writes utk/UTKFace/, and
    # --release_dir=utk answered "no .jpg file" without naming the folder it could see.
    utk = releases["utkface"]
    with pytest.raises(DataError, match=r"no \.jpg file; .*UTKFace looks like the release: "
                                        r"pass --release_dir=.*UTKFace"):
        sources.list_images(utk)
    with pytest.raises(DataError, match=r"imdb_train_new.csv: not found; .*imdb-clean looks "
                                        r"like the release: pass --release_dir=.*imdb-clean"):
        sources.imdb_clean.read(releases["imdb_clean"], os.path.join(releases["imdb_clean"], "imdb"))


def test_fgnet_age_and_person_come_from_the_name(releases, tmp_path):
    _, report, manifests, rejected = _prepare(releases, tmp_path, "fgnet")
    kept = pd.concat(manifests.values())
    names = kept["path"]
    assert (kept["identity"] == "fgnet:" + names.str[:3]).all()
    assert (kept["age"] == names.str[4:6].astype(int)).all()
    assert names.str.endswith(".JPG").any() and names.str.endswith(".jpg").any()  # both cases
    # Planted impossible ages do not fit the name's two digits: rejected naming the pattern.
    assert rejected["reason"].str.contains(r"is not \{person\}A\{age\}").any()
    assert report["identities"] == "the person number in the file name"
    people = [set(m["identity"]) for m in manifests.values()]
    assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])


def test_fgnet_names_read_one_by_one():
    assert sources.fgnet.fields_of("001A02.JPG") == (2.0, "001", "")
    assert sources.fgnet.fields_of("082A43b.jpg") == (43.0, "082", "")
    for bad in ("1A02.JPG", "001A2.JPG", "001B02.JPG", "001A02ab.JPG", "001A\u00b2\u00b2.JPG"):
        assert "is not {person}A{age}" in sources.fgnet.fields_of(bad)[2]


def test_afad_gender_is_its_folder_code(releases, tmp_path):
    _, report, manifests, rejected = _prepare(releases, tmp_path, "afad")
    kept = pd.concat(manifests.values())
    folder = kept["path"].str.split("/").str[1]
    assert ((folder == "111") == (kept["gender"] == 1)).all()
    assert ((folder == "112") == (kept["gender"] == 0)).all()
    assert (kept["age"] == kept["path"].str.split("/").str[0].astype(int)).all()
    reasons = " | ".join(rejected["reason"])
    assert "gender folder '113' is neither 111 (male) nor 112 (female)" in reasons
    assert report["identities"].startswith("none in the release")


def test_cacd_identity_and_official_split_come_from_the_meta_file(releases, tmp_path):
    truth = pd.read_csv(_truth(releases, "cacd")).set_index("full_path")
    _, report, manifests, rejected = _prepare(releases, tmp_path, "cacd", split="official")
    for split, m in manifests.items():
        ranks = truth.loc[m["path"], "rank"]
        expected = {"val": (1, 2), "test": (3, 5), "train": (6, 99)}[split]
        assert len(m) and ranks.between(*expected).all()
        assert (m["identity"].str.removeprefix("cacd:").astype(int)
                == truth.loc[m["path"], "identity"].to_numpy()).all()
    reasons = " | ".join(rejected["reason"])
    assert "no row in celebrity2000_meta.mat" in reasons  # a file the meta file does not list
    assert "no celebrity rank in its row" in reasons  # a row without its rank
    assert report["split"] == "the release's own subsets"


def test_cacd_meta_file_problems_are_named(tmp_path):
    from age_tf.errors import DataError

    (tmp_path / "CACD2000").mkdir()
    with pytest.raises(DataError, match="celebrity2000_meta.mat: not found"):
        sources.cacd.read(str(tmp_path))
    (tmp_path / "celebrity2000_meta.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="not a readable MATLAB"):
        sources.cacd.read(str(tmp_path))
    assert [sources.cacd.split_of_rank(r) for r in (1, 2, 3, 5, 6, 50, np.nan)] == [
        "val", "val", "test", "test", "train", "train", ""]


def test_morph_age_gender_and_race(releases, tmp_path):
    truth = pd.read_csv(_truth(releases, "morph")).set_index("full_path")
    csv = pd.read_csv(os.path.join(releases["morph"], "MORPH", "morph_2008_nonCommercial.csv"),
                      keep_default_na=False, dtype=str).set_index("photo")
    _, report, manifests, rejected = _prepare(releases, tmp_path, "morph")
    kept = pd.concat(manifests.values())
    rows = csv.loc[kept["path"]]
    assert (kept["age"].to_numpy() == rows["age"].astype(int).to_numpy()).all()
    assert ((rows["gender"].str.upper() == "M").to_numpy() == (kept["gender"] == 1).to_numpy()).all()
    races = {"B": "Black", "W": "White", "A": "Asian", "H": "Hispanic", "O": "Other"}
    assert (kept["race"].fillna("").to_numpy() == rows["race"].map(races).fillna("").to_numpy()).all()
    assert (kept["identity"] == "morph:" + rows["id_num"].to_numpy()).all()
    assert "missing file" in set(rejected["reason"])  # a row whose photo is not there
    # A photo no row lists is never read.
    assert len(kept) + len(rejected) == len(csv)
    assert set(truth.index) == set(csv.index)


def test_utkface_race_is_kept_in_the_manifest(releases, tmp_path):
    _, _, manifests, _ = _prepare(releases, tmp_path, "utkface")
    kept = pd.concat(manifests.values())
    codes = kept["path"].str.split("_").str[2]
    assert (kept["race"] == codes.map(sources.utkface.RACES)).all()
