"""The unified benchmark's database files (Paplhám et al., CVPR 2024): one JSON list per
dataset, one entry per face.

Each entry: img_path (relative to the images' root), age, and as the dataset has them:
id_num (the person), name (AgeDB's person), gender M/F, folder (the benchmark's split unit),
aligned_bbox (the aligned square's four corners, 1-based pixels; see data/align.py),
database (its name). Person: id_num, else name, else each image its own person (CLAP2016).

Folders: ten subject-exclusive folders 0-9, whose five splits the benchmark lists
(BENCHMARK_SPLITS, literally: split 3 is not a shift of the others); a dataset with an
official split (CLAP2016, CACD2000) uses folders 0/1/2 as train/val/test in all five; FG-NET
has one folder per person and is only ever a test set (the whole of it).
"""

from __future__ import annotations

import json
import math
import os
import posixpath

import numpy as np

from age_tf.data import align
from age_tf.data.metadata import read_release
from age_tf.data.sources import common
from age_tf.errors import DataError

# facebase/benchmarks/*.yaml: (train folders, val folders, test folders) of splits 0-4.
BENCHMARK_SPLITS = (
    ((0, 1, 2, 3, 4, 5), (6, 7), (8, 9)),
    ((2, 3, 4, 5, 6, 7), (8, 9), (0, 1)),
    ((4, 5, 6, 7, 8, 9), (0, 1), (2, 3)),
    ((5, 6, 7, 8, 9, 0), (1, 2), (3, 4)),
    ((6, 7, 8, 9, 0, 1), (2, 3), (4, 5)),
)
TEN_FOLDERS = tuple(range(10))
OFFICIAL_FOLDERS = (0, 1, 2)  # train, val, test
# Databases whose folders are their official split, and those with a folder per person.
OFFICIAL_DATABASES = ("ChaLearn2016", "CLAP2016", "CACD2000")
PER_PERSON_DATABASES = ("FG-NET",)
# The largest file (IMDB-Clean's) is ~60 MB; parsed, JSON takes ~10x its size in memory.
MAX_DATABASE_BYTES = 128 * 2**20
MAX_ENTRIES = 2_000_000


def folder_kind(database: str) -> str:
    """'official' (folders 0/1/2), 'person' (one per person) or 'ten' (0-9, five splits)."""
    if database in OFFICIAL_DATABASES:
        return "official"
    return "person" if database in PER_PERSON_DATABASES else "ten"


def read_database(path: str) -> list:
    """The JSON list of a database file, bounded.

    Raises:
      DataError: missing, too large, not JSON, or not a list of objects (names the file).
    """
    if not os.path.isfile(path):
        raise DataError(f"--database={path}: no such file; pass the benchmark's database JSON "
                        "(e.g. AgeDB.json)")
    size = os.path.getsize(path)
    if size > MAX_DATABASE_BYTES:
        raise DataError(f"{path}: {size / 2**20:,.0f} MB is too large for a database file (at "
                        f"most {MAX_DATABASE_BYTES // 2**20} MB)")
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: nesting too deep
        raise DataError(f"{path}: not a readable JSON database file "
                        f"({str(e)[:200] or type(e).__name__})") from e
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: a database file is a non-empty JSON list of faces")
    if len(entries) > MAX_ENTRIES:
        raise DataError(f"{path}: {len(entries):,} entries is more than any dataset has")
    return entries


def _number(value) -> float:
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def _entry(e, kind: str) -> dict:
    """One entry read into the table's fields, with the first problem found ('' if none)."""
    if not isinstance(e, dict):
        return {"problem": "entry is not a JSON object"}
    out = {"path": e.get("img_path"), "problem": ""}
    if not isinstance(out["path"], str) or not out["path"]:
        out.update(path="", problem="no img_path")
        return out
    norm = posixpath.normpath(out["path"].replace("\\", "/"))
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or ":" in norm[:3]:
        out.update(path="", problem=f"img_path {out['path'][:80]!r} is not inside the images "
                                    "folder")
        return out
    age = _number(e.get("age"))
    out["age"] = age
    if not math.isfinite(age):
        out["problem"] = f"age {str(e.get('age'))[:40]!r} is not a number"
    g = e.get("gender")
    out["gender"] = {"M": 1.0, "F": 0.0}.get(str(g).upper(), math.nan) if g is not None else math.nan
    person = e.get("id_num", e.get("name"))
    out["identity"] = (f"person:{person}" if person not in (None, "")
                       else f"image:{out['path']}")
    folder = _number(e.get("folder"))
    out["folder"] = folder
    allowed = {"ten": TEN_FOLDERS, "official": OFFICIAL_FOLDERS}.get(kind)
    if not out["problem"] and not (math.isfinite(folder) and folder == int(folder)):
        out["problem"] = f"folder {str(e.get('folder'))[:20]!r} is not a whole number"
    elif not out["problem"] and allowed and int(folder) not in allowed:
        out["problem"] = (f"folder {int(folder)} is not one of the benchmark's "
                          f"{'ten (0-9)' if kind == 'ten' else 'official three (0/1/2)'}")
    box = e.get("aligned_bbox")
    out["aligned_bbox"] = ""
    if box not in (None, []):
        try:
            out["aligned_bbox"] = align.corners_text(align.bbox_corners(
                [_number(v) for v in box] if isinstance(box, list) else [math.nan]))
        except ValueError as err:
            out["problem"] = out["problem"] or str(err)
    return out


def read(database: str, images_dir: str) -> common.Source:
    """A database file read into rows (see the module docstring)."""
    entries = read_database(database)
    names = {e.get("database") for e in entries if isinstance(e, dict)} - {None}
    name = sorted(names)[0] if len(names) == 1 else os.path.basename(database)
    kind = folder_kind(name)
    rows = [_entry(e, kind) for e in entries]

    def get(key: str, default):
        return np.array([r.get(key, default) for r in rows],
                        dtype=object if isinstance(default, str) else float)

    table = common.table(
        len(rows), full_path=get("path", ""), age=get("age", math.nan),
        gender=get("gender", math.nan), identity=get("identity", ""),
        folder=get("folder", math.nan), aligned_bbox=get("aligned_bbox", ""),
        label_source=f"facebase: {name}", problem=get("problem", ""))
    table["full_path"] = table["full_path"].replace("", "?")  # named in its rejection
    has_people = any("id_num" in e or "name" in e for e in entries if isinstance(e, dict))
    return common.Source(
        "facebase", table, images_dir, database, common.CROPS,
        "the database's id_num or name" if has_people else
        "none in the database: each image its own person",
        {**read_release(database), "database": name, "folders": kind})


def benchmark_subsets(folders: np.ndarray, kind: str, split: int) -> np.ndarray:
    """0/1/2 (train/val/test) per row of benchmark split `split` (0-4): the folders as the
    benchmark lists them, or the official folders.

    Raises:
      ValueError: a database with a folder per person (FG-NET has no benchmark split), or a
        split outside 0-4.
    """
    if kind == "person":
        raise ValueError("--split=benchmark: this database has a folder per person (FG-NET); "
                         "the benchmark tests on the whole of it: pass --split=whole")
    if not 0 <= split < len(BENCHMARK_SPLITS):
        raise ValueError(f"--benchmark_split must be 0-{len(BENCHMARK_SPLITS) - 1}, got {split}")
    f = np.asarray(folders, float).astype(int)
    if kind == "official":
        return f
    out = np.full(len(f), -1)
    for subset, listed in enumerate(BENCHMARK_SPLITS[split]):
        out[np.isin(f, listed)] = subset
    return out
