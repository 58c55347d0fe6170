"""Reads IMDB-WIKI metadata (`imdb.mat` / `wiki.mat`) into a pandas DataFrame."""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import pandas as pd
import scipy.io

from age_tf.errors import DataError

# Fields every release file has; imdb.mat adds celeb_names and celeb_id.
REQUIRED_FIELDS = (
    "dob",
    "photo_taken",
    "full_path",
    "gender",
    "name",
    "face_location",
    "face_score",
    "second_face_score",
)
STRUCT_KEYS = ("imdb", "wiki")

# MATLAB serial day numbers count from year 0; Python ordinals from 0001-01-01.
# datenum(1, 1, 1) == 367, so a valid dob lies in [367, date.max.toordinal() + 366].
_MATLAB_OFFSET = 366
_MIN_DOB = 1 + _MATLAB_OFFSET
_MAX_DOB = datetime.date.max.toordinal() + _MATLAB_OFFSET


# Beside a synthetic release's .mat: what made it ({"generator", "synthetic", "crop_margin",
# ...}); a real release has none.
RELEASE_FILE = "release.json"



def read_release(mat_path: str) -> dict:
    """The release record beside a .mat file, or {} for a release without one.

    Raises:
      DataError: the record exists but is not a JSON object (names the file).
    """
    path = os.path.join(os.path.dirname(os.path.abspath(mat_path)), RELEASE_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable release record ({e}); remove it or "
                        "regenerate the release with age-tf-synth") from e
    if not isinstance(record, dict):
        raise DataError(f"{path}: a release record must be a JSON object")
    return record


def matlab_datenum_to_date(dob: float) -> datetime.date | None:
    """Converts a MATLAB serial day number to a date, or None when it is not a valid date."""
    try:
        value = float(dob)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value):
        return None
    day = int(np.floor(value))
    if day < _MIN_DOB or day > _MAX_DOB:
        return None
    return datetime.date.fromordinal(day - _MATLAB_OFFSET)


def age_at_mid_year(birth: datetime.date | None, photo_taken: int) -> int | None:
    """Completed years on 1 July of the year the photo was taken (the release's convention).

    A birthday on 1 July counts as completed on that day.
    """
    if birth is None:
        return None
    age = int(photo_taken) - birth.year
    if (birth.month, birth.day) > (7, 1):
        age -= 1
    return age


def _cell_str(value) -> str:
    """Returns the string inside a MATLAB cell element ('' for an empty cell)."""
    arr = np.asarray(value)
    if arr.size == 0:
        return ""
    item = arr.reshape(-1)[0]
    return str(item)


def _vector(struct, field: str, path: str, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(struct[field])
    except (KeyError, ValueError, IndexError) as e:
        raise DataError(f"{path}: field '{field}' is missing from the metadata struct") from e
    arr = arr.reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise DataError(
            f"{path}: field '{field}' has {arr.shape[0]} entries but 'full_path' has {n}; "
            "the file is not an IMDB-WIKI release metadata file or is damaged"
        )
    return arr


def _numbers(struct, field: str, path: str, n: int, dtype) -> np.ndarray:
    """A numeric field as `dtype`; a field of text or cells is refused, naming it."""
    arr = _vector(struct, field, path, n)
    try:
        if arr.dtype.kind not in "biuf":
            raise ValueError(arr.dtype)
        return arr.astype(dtype)
    except (ValueError, TypeError) as e:
        sample = arr[0] if arr.size else None
        raise DataError(f"{path}: field '{field}' must hold numbers, but holds {arr.dtype} "
                        f"values (e.g. {sample!r}); the file is not an IMDB-WIKI release "
                        "metadata file or is damaged") from e


def load_metadata(path: str) -> pd.DataFrame:
    """Loads an IMDB-WIKI metadata file.

    Args:
      path: path to `imdb.mat` or `wiki.mat` (MATLAB 5 format, as released).

    Returns:
      One row per entry, in file order, with columns: row, full_path, dob (float), birth_date
      (datetime.date or None), photo_taken (int64), age (nullable Int64; missing when dob is
      not a valid date), gender (float, NaN unknown), name, identity (str), face_x1..face_y2,
      face_score, second_face_score. `identity` is `celeb:<celeb_id>` in imdb.mat and
      `name:<name>` in wiki.mat (`path:<full_path>` when the name is empty).

    Raises:
      DataError: the file is missing, unreadable, or lacks the expected struct or fields.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: metadata file not found; pass --mat=<path to imdb.mat or wiki.mat>")
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as e:
        # scipy raises this for MATLAB v7.3 (HDF5) files.
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; the IMDB-WIKI release uses "
            "MATLAB 5 format, re-save with `save(..., '-v7')`"
        ) from e
    except Exception as e:  # scipy raises several types for garbage input.
        raise DataError(f"{path}: not a readable MATLAB .mat file ({e})") from e

    keys = [k for k in STRUCT_KEYS if k in mat]
    if not keys:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"{path}: no 'imdb' or 'wiki' struct in the file (found: {found or 'nothing'}); "
            "is this an IMDB-WIKI metadata file?"
        )
    key = keys[0]
    outer = mat[key]
    if outer.dtype.names is None or outer.size != 1:
        raise DataError(f"{path}: '{key}' is not a 1x1 struct")
    struct = outer.reshape(-1)[0]
    missing = [f for f in REQUIRED_FIELDS if f not in outer.dtype.names]
    if missing:
        raise DataError(f"{path}: struct '{key}' lacks field(s) {missing}")

    full_path = _vector(struct, "full_path", path, None)
    n = full_path.shape[0]
    # Never trust the stored dtypes: photo_taken is uint16 in the real wiki.mat, and
    # unsigned arithmetic would wrap silently.
    dob = _numbers(struct, "dob", path, n, np.float64)
    photo_taken = _numbers(struct, "photo_taken", path, n, np.float64)
    if not np.isfinite(photo_taken).all():
        raise DataError(f"{path}: field 'photo_taken' holds NaN or infinite years; the file is "
                        "damaged")
    photo_taken = photo_taken.astype(np.int64)
    gender = _numbers(struct, "gender", path, n, np.float64)
    names = [_cell_str(v) for v in _vector(struct, "name", path, n)]
    face_score = _numbers(struct, "face_score", path, n, np.float64)
    second = _numbers(struct, "second_face_score", path, n, np.float64)
    locations = _vector(struct, "face_location", path, n)
    boxes = np.full((n, 4), np.nan)
    for i, loc in enumerate(locations):
        loc = np.asarray(loc, dtype=np.float64).reshape(-1)
        if loc.size == 4:
            boxes[i] = loc

    paths = [_cell_str(v) for v in full_path]
    births = [matlab_datenum_to_date(d) for d in dob]
    ages = [age_at_mid_year(b, y) for b, y in zip(births, photo_taken)]

    if "celeb_id" in outer.dtype.names:
        celeb_id = _numbers(struct, "celeb_id", path, n, np.float64)
        identity = [f"celeb:{int(c)}" if np.isfinite(c) else f"path:{p}" for c, p in zip(celeb_id, paths)]
    else:
        identity = [f"name:{nm}" if nm else f"path:{p}" for nm, p in zip(names, paths)]

    return pd.DataFrame(
        {
            "row": np.arange(n),
            "full_path": paths,
            "dob": dob,
            "birth_date": births,
            "photo_taken": photo_taken,
            "age": pd.array(ages, dtype="Int64"),
            "gender": gender,
            "name": names,
            "identity": identity,
            "face_x1": boxes[:, 0],
            "face_y1": boxes[:, 1],
            "face_x2": boxes[:, 2],
            "face_y2": boxes[:, 3],
            "face_score": face_score,
            "second_face_score": second,
        }
    )
