"""One adapter per dataset release: its files -> one table of rows for age-tf-prepare.

Every adapter returns the same columns, one row per image (or face) the release lists, in a
fixed order (the order the synthetic writers' ground truth follows):

  row, full_path (relative to images_dir), age (float, NaN when unreadable), identity,
  gender (IMDB-WIKI's code: 1 male, 0 female, NaN unknown), face_x1..face_y2 (the face box
  in MATLAB's 1-based pixels, NaN when the image is the crop), face_score,
  second_face_score (IMDB-WIKI only), official_split ('' or train/val/test), label_source,
  problem ('' or why the row's name or label cannot be used: it is rejected with it).

A row is never dropped here: what cannot be read is kept with its `problem`, so
rejected.csv gives a reason for every row of the release.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re

import numpy as np
import pandas as pd

from age_tf.data.metadata import DataError, load_metadata, read_release

FORMATS = ("imdb_wiki", "imdb_clean", "appa_real", "utkface", "agedb")
LABELS = ("real", "apparent")
OFFICIAL_SPLIT_FORMATS = ("imdb_clean", "appa_real")  # releases with their own subsets
# The release's crops: the detector's box plus 40% of its size on each side (Rothe et al.,
# DEX), as IMDB-WIKI's and APPA-REAL's face files were cut; the default margin wherever a
# face is cropped.
RELEASE_MARGIN = 0.4
CROPS, FULL_PHOTOS = "crops", "full photos"  # each image is the face / crop its face box
COLUMNS = ["row", "full_path", "age", "identity", "gender", "face_x1", "face_y1", "face_x2",
           "face_y2", "face_score", "second_face_score", "official_split", "label_source",
           "problem"]
# A release's CSVs are read whole: bounded like a manifest (the largest, IMDB-Clean's train
# CSV, is ~20 MB).
MAX_CSV_BYTES = 512 * 2**20
MAX_LISTED_FILES = 5_000_000
# APPA-REAL's subsets, by the name its folders and CSVs use -> the manifest's split.
APPA_SPLIT_OF_FILE = {"train": "train", "valid": "val", "test": "test"}
APPA_CSV = "gt_avg_{}.csv"  # one per subset, of the mean ratings and real ages
IMDB_CLEAN_CSVS = {"train": "imdb_train_new.csv", "val": "imdb_valid_new.csv",
                   "test": "imdb_test_new.csv"}
IMDB_CLEAN_COLUMNS = ("filename", "age", "gender", "x_min", "y_min", "x_max", "y_max")
APPA_COLUMNS = ("file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age")


@dataclasses.dataclass
class Source:
    """A release read into rows, and what the release says about them."""

    format: str
    table: pd.DataFrame  # COLUMNS
    images_dir: str
    origin: str  # the file or folder named in messages and the report
    framing: str  # CROPS or FULL_PHOTOS
    identities: str  # how identity was found, or that the release names none
    release: dict  # release.json of a synthetic release ({} for a real one)


_UNKNOWN = {"age": np.nan, "gender": np.nan, "face_x1": np.nan, "face_y1": np.nan,
            "face_x2": np.nan, "face_y2": np.nan, "face_score": np.nan,
            "second_face_score": np.nan, "official_split": "", "label_source": "", "problem": ""}


def _table(n: int, **columns) -> pd.DataFrame:
    """A COLUMNS frame of n rows: the given columns, the rest at their 'unknown' value."""
    frame = pd.DataFrame({"row": np.arange(n)})
    for c in COLUMNS[1:]:
        frame[c] = columns.get(c, _UNKNOWN.get(c))
    return frame


def checked_csv(path: str, required, max_bytes: int, what: str, fix: str,
                **read_kw) -> pd.DataFrame:
    """A CSV no larger than max_bytes with the `required` columns (read_kw go to pandas).

    Raises:
      DataError: too large, unreadable, or lacking a column; names the file, says `fix`.
    """
    size = os.path.getsize(path)
    if size > max_bytes:
        raise DataError(f"{path}: {size / 2**20:,.0f} MB is too large for a {what} (at most "
                        f"{max_bytes // 2**20:,} MB); {fix}")
    try:
        header = _header(path)
        df = pd.read_csv(path, **read_kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            csv.Error) as e:
        raise DataError(f"{path}: not a readable {what} ({e})") from e
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # pandas would rename the second to 'age.1' and read the first without a word
        raise DataError(f"{path}: column {', '.join(map(repr, twice))} appears more than once in "
                        f"the header; which one holds the values cannot be told; {fix}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))} (has: "
                        f"{', '.join(map(str, df.columns))}); {fix}")
    return df


def _header(path: str, max_bytes: int = 1 << 20) -> list[str]:
    """The column names of a CSV's first line (read within max_bytes)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = f.readline(max_bytes)
    rows = list(csv.reader([line]))
    return [c.strip() for c in rows[0]] if rows else []


def read_csv(path: str, required: tuple[str, ...]) -> pd.DataFrame:
    """A release CSV, every value as text (each adapter parses and judges its own columns).

    Raises:
      DataError: missing, too large, unreadable, or lacking a column (names the file).
    """
    if not os.path.isfile(path):
        folder, name = os.path.split(path)
        inner = release_inside(folder, lambda d: os.path.isfile(os.path.join(d, name)))
        raise DataError(f"{path}: not found; " + (
            f"{inner} looks like the release: pass --release_dir={inner}" if inner else
            "is --release_dir the folder the release unpacked to?"))
    return checked_csv(path, required, MAX_CSV_BYTES, "release CSV", "is it the release's file?",
                       dtype=str, keep_default_na=False)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(float)


def _problems(*checks: tuple[np.ndarray, list[str] | str]) -> np.ndarray:
    """The first failing check's reason per row ('' where all pass); checks are
    (bad mask, reason or per-row reasons) in order."""
    n = len(checks[0][0])
    out = np.full(n, "", dtype=object)
    for bad, reason in checks:
        reasons = np.full(n, reason, dtype=object) if isinstance(reason, str) else np.asarray(
            reason, dtype=object)
        take = np.asarray(bad) & (out == "")
        out[take] = reasons[take]
    return out


def list_images(folder: str) -> list[str]:
    """The .jpg files directly in folder, sorted by name (the adapters' row order)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder; pass --release_dir=<the folder of the images>")
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            # Links and special files are listed too: the image check rejects each with its
            # reason (a dangling link or a FIFO must show in rejected.csv, not vanish).
            if entry.name.lower().endswith(".jpg") and not entry.is_dir():
                names.append(entry.name)
                if len(names) > MAX_LISTED_FILES:
                    raise DataError(f"{folder}: more than {MAX_LISTED_FILES:,} images; is it "
                                    "the release's folder?")
    if not names:
        inner = release_inside(folder, _has_jpg)
        raise DataError(f"{folder}: no .jpg file; " + (
            f"{inner} looks like the release: pass --release_dir={inner}" if inner else
            "is it the folder the release unpacked to?"))
    return sorted(names)


def _has_jpg(folder: str) -> bool:
    with os.scandir(folder) as it:
        return any(e.name.lower().endswith(".jpg") for e in it)


def release_inside(folder: str, looks_right, depth: int = 2, max_entries: int = 1000) -> str | None:
    """The first subfolder (up to `depth` levels down, in name order) for which
    looks_right(path) holds: a release unpacked one level deeper than the folder given."""
    if depth == 0 or not os.path.isdir(folder):
        return None
    try:
        with os.scandir(folder) as it:
            subs = sorted(e.path for _, e in zip(range(max_entries), it)
                          if e.is_dir(follow_symlinks=False))
    except OSError:
        return None
    for sub in subs:
        if looks_right(sub):
            return sub
    for sub in subs:
        found = release_inside(sub, looks_right, depth - 1, max_entries)
        if found:
            return found
    return None


def imdb_wiki(mat: str, images_dir: str) -> Source:
    """imdb.mat / wiki.mat and their crops (metadata.load_metadata)."""
    df = load_metadata(mat)
    table = _table(len(df), full_path=df["full_path"].to_numpy(object),
                   age=df["age"].astype("Float64").to_numpy(float, na_value=np.nan),
                   identity=df["identity"].to_numpy(object), gender=df["gender"].to_numpy(),
                   face_x1=df["face_x1"].to_numpy(), face_y1=df["face_y1"].to_numpy(),
                   face_x2=df["face_x2"].to_numpy(), face_y2=df["face_y2"].to_numpy(),
                   face_score=df["face_score"].to_numpy(),
                   second_face_score=df["second_face_score"].to_numpy(),
                   label_source="imdb_wiki: photo_taken - dob")
    kind = "celebrity id" if df["identity"].str.startswith("celeb:").any() else "name"
    return Source("imdb_wiki", table, images_dir, mat, CROPS, f"the release's {kind}",
                  read_release(mat))


_NM = re.compile(r"(?:^|/)(nm\d+)_")


def imdb_clean(release_dir: str, images_dir: str) -> Source:
    """IMDB-Clean's imdb_{train,valid,test}_new.csv over the full IMDB photos.

    The CSV boxes are 0-based pixel coordinates; they become the release's 1-based ones, so
    --crop_faces frames them as it frames IMDB-WIKI's face_location. Identity is the IMDb
    person id (nm...) of the file name.
    """
    parts = []
    for split, name in IMDB_CLEAN_CSVS.items():
        df = read_csv(os.path.join(release_dir, name), IMDB_CLEAN_COLUMNS)
        df["official_split"] = split
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    age = _numbers(df["age"])
    box = np.stack([_numbers(df[c]) for c in ("x_min", "y_min", "x_max", "y_max")], 1)
    gender = df["gender"].str.strip().str.upper().map({"M": 1.0, "F": 0.0}).to_numpy(float)
    nm = df["filename"].str.extract(_NM, expand=False)
    problem = _problems(
        (~np.isfinite(age), [f"age {a!r} is not a number" for a in df["age"]]),
        (~np.isfinite(box).all(1) | (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1]),
         "face box x_min,y_min,x_max,y_max is not a box"))
    table = _table(len(df), full_path=df["filename"].to_numpy(object), age=age,
                   identity=np.where(nm.notna(), "nm:" + nm.fillna(""),
                                     "path:" + df["filename"]).astype(object),
                   gender=gender, face_x1=box[:, 0] + 1, face_y1=box[:, 1] + 1,
                   face_x2=box[:, 2] + 1, face_y2=box[:, 3] + 1,
                   official_split=df["official_split"].to_numpy(object),
                   label_source="imdb_clean: age", problem=problem)
    return Source("imdb_clean", table, images_dir, release_dir, FULL_PHOTOS,
                  "the IMDb person id (nm...) in the file name", read_release(
                      os.path.join(release_dir, IMDB_CLEAN_CSVS["train"])))


def appa_real(release_dir: str, label: str) -> Source:
    """APPA-REAL's gt_avg_{train,valid,test}.csv, the X.jpg_face.jpg crops (40% margin).

    `label`: 'real' (real_age) or 'apparent' (apparent_age_avg, the mean of the ratings).
    The release names no person: each image is its own group.
    """
    parts = []
    for file_split, split in APPA_SPLIT_OF_FILE.items():
        df = read_csv(os.path.join(release_dir, APPA_CSV.format(file_split)), APPA_COLUMNS)
        df["full_path"] = file_split + "/" + df["file_name"].str.strip() + "_face.jpg"
        df["official_split"] = split
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    column = "real_age" if label == "real" else "apparent_age_avg"
    age = _numbers(df[column])
    problem = _problems((~np.isfinite(age), [f"{column} {a!r} is not a number"
                                             for a in df[column]]))
    table = _table(len(df), full_path=df["full_path"].to_numpy(object), age=age,
                   identity=("image:" + df["full_path"]).to_numpy(object),
                   official_split=df["official_split"].to_numpy(object),
                   label_source=f"appa_real: {column}", problem=problem)
    return Source("appa_real", table, release_dir, release_dir, CROPS,
                  "none in the release: each image is its own group",
                  read_release(os.path.join(release_dir, APPA_CSV.format("train"))))


def _whole_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits float() refuses."""
    return text.isascii() and text.isdigit()


def name_problem(name: str) -> str:
    """Why a file name cannot be kept in a manifest ('' when it can): a NUL byte (no file
    system has it), or bytes that are not UTF-8 (the manifest could not be written)."""
    if "\x00" in name:
        return "file name holds a NUL byte"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"file name {shown!r} is not UTF-8"
    return ""


def _utk_fields(name: str) -> tuple[float, float, str]:
    """(age, IMDB-WIKI gender code, problem) of one UTKFace file name."""
    stem = name[: -len(".jpg.chip.jpg")] if name.endswith(".jpg.chip.jpg") else name[:-4]
    fields = stem.split("_")
    if len(fields) != 4:
        return np.nan, np.nan, (f"file name has {len(fields)} field(s), not "
                                "age_gender_race_date&time")
    age, gender, race, _ = fields
    if not _whole_number(age):
        return np.nan, np.nan, f"age {age!r} is not a number"
    if gender not in ("0", "1"):
        return float(age), np.nan, f"gender code {gender!r} is neither 0 (male) nor 1 (female)"
    if race not in ("0", "1", "2", "3", "4"):
        return float(age), np.nan, f"race code {race!r} is not 0-4"
    return float(age), 1.0 - float(gender), ""  # UTKFace: 0 male, 1 female


def utkface(release_dir: str) -> Source:
    """UTKFace: [age]_[gender]_[race]_[date&time].jpg(.chip.jpg), labels in the names."""
    names = list_images(release_dir)
    fields = [_utk_fields(n) for n in names]
    table = _table(len(names), full_path=np.array(names, dtype=object),
                   age=np.array([f[0] for f in fields]), gender=np.array([f[1] for f in fields]),
                   identity=np.array(["image:" + n for n in names], dtype=object),
                   label_source="utkface: file name",
                   problem=np.array([f[2] for f in fields], dtype=object))
    return Source("utkface", table, release_dir, release_dir, CROPS,
                  "none in the release: each image is its own group",
                  read_release(os.path.join(release_dir, names[0])))


def _agedb_fields(name: str) -> tuple[float, float, str, str]:
    """(age, gender code, person, problem) of one AgeDB file name ({id}_{name}_{age}_{g})."""
    tokens = name[:-4].split("_")
    if len(tokens) < 4:
        return np.nan, np.nan, "", f"file name has {len(tokens)} field(s), not id_name_age_gender"
    person, age, gender = "_".join(tokens[1:-2]), tokens[-2], tokens[-1].lower()
    if not person:
        return np.nan, np.nan, "", "no name between the id and the age"
    if not _whole_number(age):
        return np.nan, np.nan, person, f"age {age!r} is not a number"
    if gender not in ("m", "f"):
        return float(age), np.nan, person, f"gender {tokens[-1]!r} is neither m nor f"
    return float(age), 1.0 if gender == "m" else 0.0, person, ""


def agedb(release_dir: str) -> Source:
    """AgeDB: {id}_{name}_{age}_{gender}.jpg; identity from the name."""
    names = list_images(release_dir)
    fields = [_agedb_fields(n) for n in names]
    table = _table(len(names), full_path=np.array(names, dtype=object),
                   age=np.array([f[0] for f in fields]), gender=np.array([f[1] for f in fields]),
                   identity=np.array([f"name:{f[2]}" if f[2] else f"image:{n}"
                                      for f, n in zip(fields, names)], dtype=object),
                   label_source="agedb: file name",
                   problem=np.array([f[3] for f in fields], dtype=object))
    return Source("agedb", table, release_dir, release_dir, CROPS, "the name in the file name",
                  read_release(os.path.join(release_dir, names[0])))


def default_images_dir(fmt: str, mat: str | None, release_dir: str | None) -> str:
    """Where a format's images are when --images_dir is not given."""
    if fmt == "imdb_wiki":
        base = os.path.dirname(os.path.abspath(mat))
        for name in ("imdb_crop", "wiki_crop"):
            if os.path.isdir(os.path.join(base, name)):
                return os.path.join(base, name)
        return os.path.join(base, "imdb_crop")
    if fmt == "imdb_clean":  # the full photos: imdb/ inside or beside the CSVs' folder
        for base in (release_dir, os.path.dirname(os.path.abspath(release_dir))):
            if os.path.isdir(os.path.join(base, "imdb")):
                return os.path.join(base, "imdb")
        return os.path.join(release_dir, "imdb")
    return release_dir


def load(fmt: str, mat: str | None, release_dir: str | None, images_dir: str,
         label: str) -> Source:
    """The release of `fmt` read into rows (see the module docstring)."""
    if fmt == "imdb_wiki":
        return imdb_wiki(mat, images_dir)
    if fmt == "imdb_clean":
        return imdb_clean(release_dir, images_dir)
    if fmt == "appa_real":
        return appa_real(release_dir, label)
    if fmt == "utkface":
        return utkface(release_dir)
    return agedb(release_dir)
