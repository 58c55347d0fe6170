"""The layouts of the other age datasets, written from one rendered synthetic release.

Each writer lays the same rendered faces out as the named public release does (file names,
CSV columns, folders, and the quirks the real files have), and writes a `ground_truth.csv`
beside it, one row per row the adapter in `age_tf.data.sources` will read, in its order,
so that every adapter is tested offline and scored against known ages:

- imdb_clean: the IMDB-WIKI release (imdb.mat, imdb_crop/) plus the full photos each crop
  was cut from (imdb/NN/...jpg) and IMDB-Clean's three CSVs (imdb-clean/), whose ages are the
  rendered ones: the cleaned truth an audit of the IMDB-WIKI labels is scored against.
- appa_real: appa-real-release/{train,valid,test}/NNNNNN.jpg + .jpg_face.jpg, gt_avg_*.csv
  (real and mean apparent age) and gt_*.csv (one row per rating).
- utkface: UTKFace/[age]_[gender]_[race]_[date&time].jpg.chip.jpg, 200 x 200.
- agedb: AgeDB/[id]_[name]_[age]_[gender].jpg.
"""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import scipy.io
from PIL import Image

from age_tf import fileio, parallel
from age_tf.data import align, sources
from age_tf.data.metadata import RELEASE_FILE, DataError
from age_tf.synthetic import faces

DESCRIPTIONS = {
    "imdb_wiki": "imdb.mat + imdb_crop/",
    "imdb_clean": "the IMDB-WIKI release + full photos imdb/ + imdb-clean/*.csv",
    "appa_real": "appa-real-release/",
    "utkface": "UTKFace/",
    "agedb": "AgeDB/",
    "fgnet": "FGNET/images/",
    "afad": "AFAD-Full/",
    "cacd": "cacd/ (CACD2000/ + celebrity2000_meta.mat)",
    "morph": "MORPH/ (morph_2008_nonCommercial.csv + Album2/)",
    "facebase": "facebase/ (the unified benchmark's Synthetic.json + Synthetic/ images)",
}
# What each format writes in --out_dir (refused unless --overwrite when present).
LAYOUTS = {
    "imdb_wiki": ("imdb.mat", "imdb_crop"),
    "imdb_clean": ("imdb.mat", "imdb_crop", "imdb", "imdb-clean"),
    "appa_real": ("appa-real-release",),
    "utkface": ("UTKFace",),
    "agedb": ("AgeDB",),
    "fgnet": ("FGNET",),
    "afad": ("AFAD-Full",),
    "cacd": ("cacd",),
    "morph": ("MORPH",),
    "facebase": ("facebase",),
}
TRUTH_FILE = "ground_truth.csv"


def truth_path(fmt: str, out_dir: str) -> str:
    """Where a format's writer puts ground_truth.csv: beside imdb.mat for IMDB-WIKI, else in
    the release's own folder (IMDB-Clean's: its CSVs' folder)."""
    if fmt == "imdb_wiki":
        return os.path.join(out_dir, TRUTH_FILE)
    return os.path.join(out_dir, "imdb-clean" if fmt == "imdb_clean" else LAYOUTS[fmt][0],
                        TRUTH_FILE)

# Kinds with no face to list: every other dataset was built from detected faces.
_NO_FACE = ("no_face", "placeholder")
# IMDB-Clean's published split sizes: 183,886 / 45,971 / 56,086 faces.
IMDB_CLEAN_SPLIT = (0.64, 0.16, 0.20)
IMDB_CLEAN_FILES = tuple(sources.imdb_clean.CSVS[s] for s in ("train", "val", "test"))
# APPA-REAL's: 4,113 / 1,500 / 1,978 images.
APPA_SPLIT = (4113 / 7591, 1500 / 7591, 1978 / 7591)
APPA_SPLITS = tuple(sources.appa_real.SPLIT_OF_FILE)  # as its folders name them
UTK_SIDE = 200


def write_release_record(folder: str, name: str, crop_margin: float | None, seed: int,
                         rows: int) -> None:
    """release.json: what made a synthetic release (a real release has none)."""
    release = {"generator": f"age-tf-synth (synthetic {name})", "synthetic": True,
               "crop_margin": crop_margin, "seed": seed, "rows": rows}
    fileio.atomic_write_text(os.path.join(folder, RELEASE_FILE), json.dumps(release, indent=2))


def _fresh_folder(path: str) -> str:
    """Empties a folder this generator wrote before (so no stale file joins the new release);
    a folder without its release.json is not ours and is refused."""
    if os.path.exists(path):
        if not os.path.exists(os.path.join(path, RELEASE_FILE)):
            raise DataError(f"{path}: exists and is not a synthetic release (no {RELEASE_FILE}); "
                            "choose another --out_dir")
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def _encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def _decoded(blob: bytes) -> Image.Image | None:
    """The crop as an image, or None for bytes no decoder reads (a truncated JPEG)."""
    try:
        img = Image.open(io.BytesIO(blob))
        img.load()
        return img
    except OSError:
        return None


def _photo(job: tuple) -> bytes:
    """A full photo: a face-free scene of (width, height) with the crop pasted at (x, y)
    and resized to `side`, so the crop's place in the photo is known to the pixel."""
    blob, seed, x, y, side, width, height = job
    crop = Image.open(io.BytesIO(blob)).convert("RGB")
    if crop.size != (side, side):
        crop = crop.resize((side, side), Image.Resampling.BICUBIC)
    scene = faces.render_scene_without_face(np.random.default_rng(seed), max(width, height))
    scene = scene.crop((0, 0, width, height))
    scene.paste(crop, (x, y))
    return _encode(scene, quality=92)


def _photos(jobs: list[tuple], workers: int) -> list[bytes]:
    chunks = parallel.chunked(jobs, 32)
    out = parallel.map_in_processes(_photo_chunk, chunks, workers)
    return [b for chunk in out for b in chunk]


def _photo_chunk(jobs: list[tuple]) -> list[bytes]:
    return [_photo(j) for j in jobs]


def truth_groups(plan: pd.DataFrame, i=None) -> dict:
    """The groups a face was rendered in (row i of the plan, or every row): gender as
    rendered (male / female) and skin-tone group, for error by group against known truth."""
    rows = plan if i is None else plan.iloc[[i]]
    out = {"gender": np.where(rows["gender"].to_numpy() == 1, "male", "female"),
           "skin_tone": rows["skin_tone"].to_numpy()}
    return out if i is None else {k: v[0] for k, v in out.items()}


def truth_landmarks(landmarks: list, moved=None) -> dict:
    """Ground-truth columns of the five landmarks drawn (<name>_x, <name>_y, 0-based pixels
    of the file written; NaN where no face was drawn). moved: (x, y) -> (x, y) of a writer
    that placed the crop elsewhere (row i's function), or None."""
    out = {}
    for name in faces.LANDMARKS:
        xs, ys = [], []
        for i, marks in enumerate(landmarks):
            x, y = marks[name] if marks else (np.nan, np.nan)
            if marks and moved is not None:
                x, y = moved(i, x, y)
            xs.append(round(float(x), 2))
            ys.append(round(float(y), 2))
        out[f"{name}_x"], out[f"{name}_y"] = xs, ys
    return out


def _truth_frame(rows: list[dict]) -> pd.DataFrame:
    truth = pd.DataFrame(rows)
    truth.insert(0, "row", np.arange(len(truth)))
    return truth


def write_imdb_clean(rendered, out_dir: str, boxes: list) -> pd.DataFrame:
    """imdb/ (the full photos) and imdb-clean/imdb_{train,valid,test}_new.csv.

    The photos are placed where imdb.mat's face_location says the crop came from; the CSV's
    box is the face in that photo (0-based pixels, as IMDB-Clean's detector gives them), so a
    0.4 margin around it is the release's crop. A few faces sit partly outside their photo
    (a box past the edge) and a few listed photos are missing, as in a real download.
    """
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 10)
    folder = _fresh_folder(os.path.join(out_dir, "imdb-clean"))
    photos_dir = _fresh_folder(os.path.join(out_dir, "imdb"))
    kept = [i for i, k in enumerate(plan["kind"]) if k not in _NO_FACE + ("truncated",)]
    idents = plan["identity"].to_numpy()
    split_of_ident = rng.choice(3, size=int(idents.max()) + 1, p=IMDB_CLEAN_SPLIT)
    place = {}  # row -> (x, y, side, width, height, scene seed); a duplicate shares its photo's
    for i in kept:
        if plan["duplicate_of"].iat[i] >= 0:
            continue
        box = np.asarray(boxes[i], dtype=float).reshape(-1)
        face = box[2] - box[0]
        side = int(round(face * (1 + 2 * sources.RELEASE_MARGIN)))
        x = int(round(box[0] - 1 - sources.RELEASE_MARGIN * face))
        y = int(round(box[1] - 1 - sources.RELEASE_MARGIN * face))
        if rng.random() < 0.03:  # a face at the photo's edge: the box reaches past it
            x = -side // 4
        place[i] = (x, y, side, max(x, 0) + side + int(rng.integers(0, 160)),
                    max(y, 0) + side + int(rng.integers(0, 160)), int(rng.integers(2**62)))
    jobs, rows = [], []
    for i in kept:
        r = plan.iloc[i]
        x, y, side, width, height, scene = place[int(r["duplicate_of"]) if r["duplicate_of"] >= 0
                                                 else i]
        f = side / (1 + 2 * sources.RELEASE_MARGIN)  # the face inside the pasted crop
        x_min, y_min = x + sources.RELEASE_MARGIN * f, y + sources.RELEASE_MARGIN * f
        rows.append(dict(
            filename=rendered.full_paths[i], age=int(r["rendered_age"]),
            gender="M" if r["gender"] == 1 else "F",
            x_min=round(x_min, 3), y_min=round(y_min, 3),
            x_max=round(x_min + f, 3), y_max=round(y_min + f, 3),
            head_roll=round(float(rng.normal(0, 6)), 2), head_yaw=round(float(rng.normal(0, 15)), 2),
            head_pitch=round(float(rng.normal(0, 8)), 2),
            split=int(split_of_ident[idents[i]]), plan_row=i, paste_x=x, paste_y=y, paste_side=side,
        ))
        if r["kind"] != "missing":
            jobs.append((i, (rendered.blobs[i], scene, x, y, side, width, height)))
    for (i, job), body in zip(jobs, _photos([j for _, j in jobs], rendered.workers)):
        fileio.write_files(photos_dir, [(rendered.full_paths[i], body)])
    table = pd.DataFrame(rows)
    csv_cols = [*sources.imdb_clean.COLUMNS, "head_roll", "head_yaw", "head_pitch"]
    ordered = []
    for s, name in enumerate(IMDB_CLEAN_FILES):
        part = table[table["split"] == s]
        part[csv_cols].to_csv(os.path.join(folder, name), index=False)
        ordered.append(part)
    table = pd.concat(ordered, ignore_index=True)
    truth = _truth_frame([
        dict(full_path=t.filename, identity=int(plan["identity"].iat[t.plan_row]) + 1,
             kind=plan["kind"].iat[t.plan_row], rendered_age=int(plan["rendered_age"].iat[t.plan_row]),
             label_age=int(plan["rendered_age"].iat[t.plan_row]),
             imdb_wiki_label_age=int(plan["label_age"].iat[t.plan_row]),
             split=APPA_SPLITS[t.split], paste_x=t.paste_x, paste_y=t.paste_y,
             paste_side=t.paste_side, **truth_groups(plan, t.plan_row))
        for t in table.itertuples()])
    truth.to_csv(os.path.join(folder, TRUTH_FILE), index=False)
    write_release_record(folder, "IMDB-Clean", None, rendered.seed, len(truth))
    write_release_record(photos_dir, "IMDB full photos", None, rendered.seed, len(jobs))
    return truth


def _listed_rows(plan: pd.DataFrame) -> list[int]:
    """Rows a face dataset lists: all but those without a face."""
    return [i for i, k in enumerate(plan["kind"]) if k not in _NO_FACE]


def _duplicate_paths(plan: pd.DataFrame, path_of: dict[int, str]) -> list[str]:
    return [path_of.get(int(d), "") if d >= 0 else "" for d in plan["duplicate_of"]]


def write_appa_real(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """appa-real-release/: the three folders, gt_avg_{split}.csv and gt_{split}.csv.

    Real age is the row's label (its mislabels and impossible ages included); apparent age
    is what ~38 raters see: the rendered age shifted by how old the face looks, each vote
    noisy. A few listed images lack their _face.jpg file, as a partial download does.
    """
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 20)
    root = _fresh_folder(os.path.join(out_dir, "appa-real-release"))
    listed = _listed_rows(plan)
    split_of = rng.choice(3, size=len(listed), p=APPA_SPLIT)
    order = [i for s in range(3) for i, si in zip(listed, split_of) if si == s]
    split_by_row = {i: int(si) for i, si in zip(listed, split_of)}
    path_of, truth_rows, faces_written = {}, [], []
    avg = {s: [] for s in APPA_SPLITS}
    votes = {s: [] for s in APPA_SPLITS}
    for n, i in enumerate(order):
        split = APPA_SPLITS[split_by_row[i]]
        name = f"{n:06d}.jpg"
        path_of[i] = f"{split}/{name}_face.jpg"
        r = plan.iloc[i]
        looks = r["rendered_age"] + rng.normal(0, 3)
        k = max(10, int(rng.poisson(38)))
        ratings = np.clip(np.round(looks + rng.normal(0, 5, k)), 1, 100).astype(int)
        real = int(r["label_age"])
        avg[split].append(dict(file_name=name, num_ratings=k,
                               apparent_age_avg=round(float(ratings.mean()), 6),
                               apparent_age_std=round(float(ratings.std(ddof=1)), 6),
                               real_age=real))
        for v in ratings:
            votes[split].append(dict(file_name=name, real_age=real, apparent_age=int(v),
                                     worker_age=int(rng.integers(18, 70)),
                                     worker_gender=("male", "female")[int(rng.integers(2))]))
        truth_rows.append(dict(full_path=path_of[i], identity=int(r["identity"]) + 1,
                               kind=r["kind"], rendered_age=int(r["rendered_age"]),
                               label_age=real, apparent_age_avg=avg[split][-1]["apparent_age_avg"],
                               split=split, **truth_groups(plan, i)))
        if r["kind"] != "missing":
            fileio.write_files(root, [(path_of[i], rendered.blobs[i])])
            faces_written.append((f"{split}/{name}", rendered.blobs[i]))
    # The full photo beside each face: the face somewhere in a larger scene.
    photo_jobs = []
    for rel, blob in faces_written:
        img = _decoded(blob)
        if img is None:  # the face file is damaged: its photo is copied damaged too
            fileio.write_files(root, [(rel, blob)])
            continue
        side = max(img.size)
        x, y = (int(v) for v in rng.integers(0, side, 2))
        photo_jobs.append((rel, (blob, int(rng.integers(2**62)), x, y, side, x + side + int(rng.integers(0, side)),
                                 y + side + int(rng.integers(0, side)))))
    for (rel, _), body in zip(photo_jobs, _photos([j for _, j in photo_jobs], rendered.workers)):
        fileio.write_files(root, [(rel, body)])
    for split in APPA_SPLITS:
        pd.DataFrame(avg[split], columns=list(sources.appa_real.COLUMNS)).to_csv(
            os.path.join(root, sources.appa_real.CSV.format(split)), index=False)
        pd.DataFrame(votes[split], columns=["file_name", "real_age", "apparent_age",
                                            "worker_age", "worker_gender"]).to_csv(
            os.path.join(root, f"gt_{split}.csv"), index=False)
    truth = _truth_frame(truth_rows)
    dups = _duplicate_paths(plan, path_of)
    truth["duplicate_of"] = [dups[i] for i in order]
    truth.to_csv(os.path.join(root, TRUTH_FILE), index=False)
    write_release_record(root, "APPA-REAL", sources.RELEASE_MARGIN, rendered.seed, len(truth))
    return truth


def _chip(blob: bytes, side: int) -> bytes:
    """An aligned crop of side x side, as UTKFace's chips are; damaged bytes stay damaged."""
    img = _decoded(blob)
    if img is None:
        return blob
    mode = "L" if img.mode == "L" else "RGB"
    return _encode(img.convert(mode).resize((side, side), Image.Resampling.BICUBIC), quality=90)


def _named_release(rendered, folder: str, names: dict[int, str], bodies: dict[int, bytes],
                   labels: dict[int, int], title: str) -> pd.DataFrame:
    """Writes files named by their labels and a truth in the adapter's order (sorted names)."""
    plan = rendered.plan
    fileio.write_files(folder, [(names[i], bodies[i]) for i in names])
    dups = _duplicate_paths(plan, names)
    rows = [dict(full_path=names[i], identity=int(plan["identity"].iat[i]) + 1,
                 kind=plan["kind"].iat[i], rendered_age=int(plan["rendered_age"].iat[i]),
                 label_age=labels[i], duplicate_of=dups[i], **truth_groups(plan, i))
            for i in sorted(names, key=lambda i: names[i])]
    truth = _truth_frame(rows)
    truth.to_csv(os.path.join(folder, TRUTH_FILE), index=False)
    write_release_record(folder, title, None, rendered.seed, len(truth))
    return truth


def write_utkface(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """UTKFace/: 200 x 200 chips named [age]_[gender]_[race]_[date&time].jpg.chip.jpg.

    Gender is 0 male, 1 female (the reverse of IMDB-WIKI's); race 0-4. The quirks of the
    public release: a few names lack a field (race), a few carry a gender code that is
    neither, and ages run to 116.
    """
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 30)
    folder = _fresh_folder(os.path.join(out_dir, "UTKFace"))
    names, bodies, labels = {}, {}, {}
    stamps = rng.choice(10**9, size=len(plan), replace=False)
    for i in _listed_rows(plan):
        r = plan.iloc[i]
        if r["kind"] == "missing":
            continue
        age = int(r["label_age"])
        if not 0 <= age <= 116:
            age = int(rng.integers(101, 117))  # names hold no sign: impossible ages are old
        gender = 0 if r["gender"] == 1 else 1
        stamp = f"2017{int(stamps[i]):013d}"
        fields = [str(age), str(gender), str(int(rng.integers(5))), stamp]
        u = rng.random()
        if u < 0.01:
            del fields[2]  # no race field
        elif u < 0.015:
            fields[1] = "3"  # a gender code that is neither
        names[i] = "_".join(fields) + ".jpg.chip.jpg"
        bodies[i], labels[i] = _chip(rendered.blobs[i], UTK_SIDE), age
    return _named_release(rendered, folder, names, bodies, labels, "UTKFace")


def write_agedb(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """AgeDB/: [id]_[name]_[age]_[gender].jpg, gender m/f, many photos in grey.

    Quirks: a name may be empty (`12__35_m.jpg`) and a few ages are not numbers.
    """
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 40)
    folder = _fresh_folder(os.path.join(out_dir, "AgeDB"))
    names, bodies, labels = {}, {}, {}
    for n, i in enumerate(_listed_rows(plan)):
        r = plan.iloc[i]
        if r["kind"] == "missing":
            continue
        person = rendered.names[int(r["identity"])].replace(" ", "")
        age = str(int(r["label_age"])) if rng.random() > 0.005 else "NA"
        names[i] = f"{n}_{person}_{age}_{'m' if r['gender'] == 1 else 'f'}.jpg"
        blob = rendered.blobs[i]
        img = _decoded(blob) if rng.random() < 0.3 else None
        bodies[i] = _encode(img.convert("L"), quality=90) if img is not None else blob
        labels[i] = int(r["label_age"]) if age != "NA" else -1
    return _named_release(rendered, folder, names, bodies, labels, "AgeDB")


def _truth_in_order(rendered, root: str, order: list[int], path_of: dict[int, str],
                    labels: dict[int, float], title: str, extra: dict | None = None) -> pd.DataFrame:
    """ground_truth.csv and release.json in `root`: one row per release row, in the
    adapter's order (`order`: rows of the plan), with `extra` columns per row."""
    plan = rendered.plan
    dups = _duplicate_paths(plan, path_of)
    rows = []
    for i in order:
        r = plan.iloc[i]
        rows.append(dict(full_path=path_of[i], identity=int(r["identity"]) + 1, kind=r["kind"],
                         rendered_age=int(r["rendered_age"]), label_age=labels[i],
                         duplicate_of=dups[i], **truth_groups(plan, i),
                         **((extra or {}).get(i, {}))))
    truth = _truth_frame(rows)
    truth.to_csv(os.path.join(root, TRUTH_FILE), index=False)
    write_release_record(root, title, None, rendered.seed, len(truth))
    return truth


def _jpg_name(rng, stem: str) -> str:
    """The extension's case varies in the real downloads (.JPG, .jpg)."""
    return stem + (".JPG" if rng.random() < 0.7 else ".jpg")


def write_fgnet(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """FGNET/images/{person:03d}A{age:02d}[letter].JPG (the letter tells photos of one age
    apart). Quirks: mixed-case extensions, and ages the two digits cannot hold (over 99 or
    below 0: the planted impossible ages) written as they are, which the name cannot carry."""
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 50)
    root = _fresh_folder(os.path.join(out_dir, "FGNET"))
    seen: dict[tuple[int, int], int] = {}
    path_of, labels, files = {}, {}, []
    for i in _listed_rows(plan):
        r = plan.iloc[i]
        person, age = int(r["identity"]) % 999 + 1, int(r["label_age"])
        k = seen.get((person, age), 0)
        seen[(person, age)] = k + 1
        letter = "" if k == 0 else "abcdefghijklmnopqrstuvwxyz"[(k - 1) % 26]
        path_of[i] = _jpg_name(rng, f"{person:03d}A{age:02d}{letter}")
        labels[i] = age
        if r["kind"] != "missing":
            files.append((f"images/{path_of[i]}", rendered.blobs[i]))
    fileio.write_files(root, files)
    written = {name for name, _ in files}
    order = sorted((i for i in path_of if f"images/{path_of[i]}" in written),
                   key=lambda i: path_of[i])
    return _truth_in_order(rendered, root, order, path_of, labels, "FG-NET")


def write_afad(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """AFAD-Full/{age}/{111|112}/{number}.jpg (111 male, 112 female). Quirks: mixed-case
    extensions, a few faces filed under a gender folder that is neither (113), and the
    impossible ages as folders of their own."""
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 60)
    root = _fresh_folder(os.path.join(out_dir, "AFAD-Full"))
    path_of, labels, files = {}, {}, []
    numbers = rng.choice(10**6, size=len(plan), replace=False)
    for i in _listed_rows(plan):
        r = plan.iloc[i]
        gender = "111" if r["gender"] == 1 else "112"
        if rng.random() < 0.01:
            gender = "113"
        path_of[i] = f"{int(r['label_age'])}/{gender}/" + _jpg_name(rng, f"{int(numbers[i])}-0")
        labels[i] = int(r["label_age"])
        if r["kind"] != "missing":
            files.append((path_of[i], rendered.blobs[i]))
    fileio.write_files(root, files)
    order = sorted((i for i in path_of if plan["kind"].iat[i] != "missing"),
                   key=lambda i: path_of[i])
    return _truth_in_order(rendered, root, order, path_of, labels, "AFAD-Full")


# CACD2000's celebrities are ranked 1-50; ranks 1-2 are its validation people, 3-5 test.
CACD_RANKS = 10


def write_cacd(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """cacd/CACD2000/{age}_{First}_{Last}_{nnnn}.jpg and cacd/celebrity2000_meta.mat.

    The meta file lists every image (celebrityImageData: age, identity, year, rank, lfw,
    birth, name) and every celebrity (celebrityData). Quirks: a listed image whose file is
    missing, a file the meta file has no row for, a row without a rank."""
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 70)
    root = _fresh_folder(os.path.join(out_dir, "cacd"))
    listed = _listed_rows(plan)
    ident = {i: int(plan["identity"].iat[i]) + 1 for i in listed}
    people = sorted(set(ident.values()))
    names = {p: (rendered.names[p - 1] or f"Person {p}").replace(" ", "_") for p in people}
    rank = {p: 1 + (p * 7) % CACD_RANKS for p in people}  # every split gets people
    birth = {p: int(plan["birth"][plan["identity"] == p - 1].iloc[0].year) for p in people}
    path_of, labels, files = {}, {}, []
    for n, i in enumerate(listed):
        r = plan.iloc[i]
        path_of[i] = f"{int(r['label_age'])}_{names[ident[i]]}_{n:04d}.jpg"
        labels[i] = int(r["label_age"])
        if r["kind"] != "missing":
            files.append((f"CACD2000/{path_of[i]}", rendered.blobs[i]))
    rows = listed[:-1]  # the last face: a file without a row
    row_rank = np.array([float(rank[ident[i]]) for i in rows])
    row_rank[rng.random(len(rows)) < 0.01] = np.nan  # a missing field
    image_data = {
        "age": _col([labels[i] for i in rows]), "identity": _col([ident[i] for i in rows]),
        "year": _col([birth[ident[i]] + labels[i] for i in rows]), "rank": row_rank[:, None],
        "lfw": _col([0] * len(rows)), "birth": _col([birth[ident[i]] for i in rows]),
        "name": _mat_cells([path_of[i] for i in rows]),
    }
    celebrity_data = {
        "name": _mat_cells([names[p] for p in people]), "identity": _col(people),
        "birth": _col([birth[p] for p in people]), "rank": _col([rank[p] for p in people]),
        "lfw": _col([0] * len(people)),
    }
    scipy.io.savemat(os.path.join(root, "celebrity2000_meta.mat"),
                     {"celebrityImageData": _mat_struct(image_data),
                      "celebrityData": _mat_struct(celebrity_data)}, format="5")
    fileio.write_files(root, files)
    extra = {rows[k]: {"rank": row_rank[k]} for k in range(len(rows))}
    extra[listed[-1]] = {"rank": float(rank[ident[listed[-1]]])}
    unlisted = [listed[-1]] if plan["kind"].iat[listed[-1]] != "missing" else []  # on disk
    return _truth_in_order(rendered, root, [*rows, *unlisted], path_of, labels, "CACD2000",
                           extra)


def _col(values) -> np.ndarray:
    """A MATLAB column of doubles."""
    return np.asarray(values, dtype=np.float64)[:, None]


def _mat_cells(texts: list[str]) -> np.ndarray:
    cells = np.empty((len(texts), 1), dtype=object)
    for k, t in enumerate(texts):
        cells[k, 0] = np.array([t])
    return cells


def _mat_struct(fields: dict) -> np.ndarray:
    struct = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        struct[0, 0][k] = v
    return struct


MORPH_RACES = ("B", "W", "A", "H", "O")


def write_morph(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """MORPH/morph_2008_nonCommercial.csv and MORPH/Album2/{id:06d}_{n:02d}{G}{age:02d}.JPG.

    Columns as the academic release documents them. Quirks: a row whose photo is missing
    (the image check rejects it), a few rows without a race, genders in lower case, a photo
    no row lists (never read)."""
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 80)
    root = _fresh_folder(os.path.join(out_dir, "MORPH"))
    race_of = {p: MORPH_RACES[int(v)] for p, v in
               enumerate(rng.integers(0, len(MORPH_RACES), plan["identity"].max() + 1))}
    path_of, labels, files, rows, extra = {}, {}, [], [], {}
    listed = _listed_rows(plan)
    for n, i in enumerate(listed):
        r = plan.iloc[i]
        person, age = int(r["identity"]) + 1, int(r["label_age"])
        g = "M" if r["gender"] == 1 else "F"
        path_of[i] = f"Album2/{person:06d}_{n % 100:02d}{g}{age % 100:02d}.JPG"
        labels[i] = age
        race = race_of[int(r["identity"])] if rng.random() > 0.01 else ""
        extra[i] = {"race": race}
        if r["kind"] != "missing":
            files.append((path_of[i], rendered.blobs[i]))
        if i == listed[-1]:
            continue  # its photo is on disk, no row lists it
        birth = plan["birth"].iat[i]
        rows.append(dict(id_num=person, picture_num=n % 100, dob=f"{birth:%m/%d/%Y}",
                         doa="", race=race, gender=g.lower() if rng.random() < 0.02 else g,
                         facial_hair=0, age=age, age_diff=0, glasses=0, photo=path_of[i]))
    pd.DataFrame(rows).to_csv(os.path.join(root, "morph_2008_nonCommercial.csv"), index=False)
    fileio.write_files(root, files)
    return _truth_in_order(rendered, root, listed[:-1], path_of, labels, "MORPH II", extra)


FACEBASE_NAME = "Synthetic"  # the database name the synthetic file carries
FACEBASE_QUIRK_RATE = 0.01  # of listed rows, for each quirk below


def facebase_database(out_dir: str) -> str:
    """The synthetic database file age-tf-synth --format=facebase writes in out_dir."""
    return os.path.join(out_dir, LAYOUTS["facebase"][0], f"{FACEBASE_NAME}.json")


def write_facebase(rendered, out_dir: str, boxes=None) -> pd.DataFrame:
    """facebase/Synthetic.json + facebase/Synthetic/*.jpg: the unified benchmark's database
    format. Each person in one of ten folders (0-9); aligned_bbox from the landmarks drawn
    (the benchmark's square, 1-based whole pixels); gender M/F; id_num the person.

    Quirks, about 1% of listed rows each, as a hand-made or damaged file has them: an
    aligned_bbox of 7 numbers, an age that is not a number, a folder outside 0-9; and the
    release's listed-but-missing images.
    """
    plan = rendered.plan
    rng = np.random.default_rng(rendered.seed + 90)
    root = _fresh_folder(os.path.join(out_dir, LAYOUTS["facebase"][0]))
    people = plan["identity"].unique()
    folder_of = dict(zip(people, rng.permutation(len(people)) % 10))
    entries, path_of, labels, files, extra = [], {}, {}, [], {}
    for i in _listed_rows(plan):
        r = plan.iloc[i]
        person = int(r["identity"]) + 1
        # The seed in the name: two synthetic datasets never share an image path.
        path_of[i] = f"{FACEBASE_NAME}/s{rendered.seed}_{person:05d}_{i:06d}.jpg"
        labels[i] = int(r["label_age"])
        marks = rendered.landmarks[i]
        box = align.to_bbox_numbers(align.square_from_landmarks(marks)) if marks else []
        entry = {"img_path": path_of[i], "id_num": person, "age": labels[i],
                 "gender": "M" if r["gender"] == 1 else "F", "database": FACEBASE_NAME,
                 "folder": int(folder_of[r["identity"]]), "aligned_bbox": box,
                 "alignment_source": "landmarks drawn"}
        quirk = ""
        u = rng.random()
        if u < FACEBASE_QUIRK_RATE and box:
            entry["aligned_bbox"], quirk = box[:7], "aligned_bbox of 7 numbers"
        elif u < 2 * FACEBASE_QUIRK_RATE:
            entry["age"], quirk = "unknown", "age not a number"
        elif u < 3 * FACEBASE_QUIRK_RATE:
            entry["folder"], quirk = 10 + int(rng.integers(5)), "folder outside 0-9"
        entries.append(entry)
        extra[i] = {"quirk": quirk, "folder": entry["folder"],
                    **{f"{k}_{c}": round(float(v[j]), 2) if marks else np.nan
                       for k, v in (marks or dict.fromkeys(faces.LANDMARKS, (0, 0))).items()
                       for j, c in enumerate("xy")}}
        if r["kind"] != "missing":
            files.append((path_of[i], rendered.blobs[i]))
    fileio.write_files(root, files)
    with fileio.atomic_path(os.path.join(root, f"{FACEBASE_NAME}.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(entries, f)
    return _truth_in_order(rendered, root, list(path_of), path_of, labels, "facebase", extra)


WRITERS = {
    "imdb_clean": write_imdb_clean,
    "appa_real": write_appa_real,
    "utkface": write_utkface,
    "agedb": write_agedb,
    "fgnet": write_fgnet,
    "afad": write_afad,
    "cacd": write_cacd,
    "morph": write_morph,
    "facebase": write_facebase,
}
