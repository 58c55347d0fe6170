"""CACD2000: CACD2000/{age}_{First}_{Last}_{nnnn}.jpg and celebrity2000_meta.mat.

The meta file lists every image (celebrityImageData: age, identity, year, rank, lfw, birth,
name) and every celebrity (celebrityData: name, identity, birth, rank, lfw): 163,446 images
of 2,000 celebrities aged 14-62. Its rows are the release's rows; identity is the meta
file's; the official split is by celebrity rank, as the unified benchmark splits
(facebase/to_json/cacd_to_json.py): rank 1-2 validation, 3-5 test, 6 and over training.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io

from age_tf.data.metadata import read_release
from age_tf.data.sources import common
from age_tf.errors import DataError

META = "celebrity2000_meta.mat"
IMAGES = "CACD2000"
IMAGE_FIELDS = ("age", "identity", "year", "rank", "lfw", "birth", "name")
MAX_META_BYTES = 512 * 2**20  # the real file is ~20 MB


def split_of_rank(rank: float) -> str:
    """The benchmark's official split of a celebrity of this rank ('' when unknown)."""
    if not np.isfinite(rank) or rank < 1:
        return ""
    return "val" if rank <= 2 else "test" if rank <= 5 else "train"


def _fields(path: str) -> dict[str, np.ndarray]:
    """celebrityImageData's fields, one flat array each (names as str)."""
    size = os.path.getsize(path)
    if size > MAX_META_BYTES:
        raise DataError(f"{path}: {size / 2**20:,.0f} MB is too large for CACD2000's meta "
                        "file; is it the release's celebrity2000_meta.mat?")
    try:
        mat = scipy.io.loadmat(path)
        data = mat["celebrityImageData"]
        out = {}
        for f in IMAGE_FIELDS:
            value = np.asarray(data[f][0, 0])
            out[f] = (np.array([str(np.asarray(v).ravel()[0]) if np.asarray(v).size else ""
                                for v in value.ravel()], dtype=object) if f == "name"
                      else value.astype(float).ravel())
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise DataError(f"{path}: no celebrityImageData struct with the fields "
                        f"{', '.join(IMAGE_FIELDS)} ({type(e).__name__}: {e}); is it the "
                        "release's celebrity2000_meta.mat?") from e
    except Exception as e:  # scipy raises several types for garbage input
        raise DataError(f"{path}: not a readable MATLAB .mat file ({e})") from e
    lengths = {f: len(v) for f, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: celebrityImageData's fields differ in length ({lengths}); the "
                        "file is damaged")
    return out


def name_age(name: str) -> float:
    """The age a CACD file name starts with (NaN when it does not)."""
    head = name.split("_", 1)[0]
    return float(head) if common.whole_number(head) else np.nan


def read(release_dir: str) -> common.Source:
    meta = os.path.join(release_dir, META)
    if not os.path.isfile(meta):
        raise DataError(f"{meta}: not found; --release_dir must be the folder holding "
                        f"{META} and {IMAGES}/")
    f = _fields(meta)
    folder = os.path.join(release_dir, IMAGES)
    files = common.list_images(folder)
    listed = set(f["name"])
    extra = [n for n in files if n not in listed]  # a file the meta file has no row for
    names = np.concatenate([f["name"], np.array(extra, dtype=object)])
    n_meta = len(f["name"])
    pad = np.full(len(extra), np.nan)
    age, rank, ident = (np.concatenate([f[k], pad]) for k in ("age", "rank", "identity"))
    by_name = np.array([name_age(n) for n in names])
    problem = common.problems(
        (np.arange(len(names)) >= n_meta, f"no row in {META}"),
        (np.array([n == "" for n in names]), f"no file name in its {META} row"),
        (~np.isfinite(age), "no age in its row"),
        (np.isfinite(by_name) & (by_name != age),
         [f"the file name says age {a:g}, {META} says {b:g}" for a, b in zip(by_name, age)]),
        (~np.isfinite(ident), "no identity in its row"),
        (~np.isfinite(rank) | (rank < 1), "no celebrity rank in its row (the split needs it)"),
    )
    table = common.table(
        len(names),
        full_path=names,
        age=age,
        identity=np.array([f"cacd:{int(i)}" if np.isfinite(i) else f"image:{n}"
                           for i, n in zip(ident, names)], dtype=object),
        official_split=np.array([split_of_rank(r) for r in rank], dtype=object),
        label_source="cacd: celebrity2000_meta.mat age",
        problem=problem,
    )
    return common.Source("cacd", table, folder, meta, common.CROPS,
                         f"the celebrity identity in {META}", read_release(meta))
