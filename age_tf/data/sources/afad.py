"""AFAD (AFAD-Full): {age}/{111|112}/{number}.jpg, ~165k faces of Asian people aged 15-72.

Age and gender are the folders (111 male, 112 female). The release names no person: each
image is its own group, as for UTKFace (the unified benchmark takes the number before a '-'
in the name as a person; the release does not say it is one), so a split by image may put
one person's photos on both sides.
"""

from __future__ import annotations

import os

import numpy as np

from age_tf.data.metadata import read_release
from age_tf.data.sources import common

GENDER_FOLDERS = {"111": 1.0, "112": 0.0}  # -> IMDB-WIKI's code: 1 male, 0 female


def fields_of(path: str) -> tuple[float, float, str]:
    """(age, gender code, problem) of one AFAD path {age}/{gender}/{file}."""
    age, gender, _ = path.split("/")
    if not common.whole_number(age):
        return np.nan, np.nan, f"age folder {age!r} is not a number"
    if gender not in GENDER_FOLDERS:
        return float(age), np.nan, (f"gender folder {gender!r} is neither 111 (male) nor 112 "
                                    "(female)")
    return float(age), GENDER_FOLDERS[gender], ""


def read(release_dir: str) -> common.Source:
    paths = common.list_tree(release_dir, 2)
    fields = [fields_of(p) for p in paths]
    table = common.table(
        len(paths),
        full_path=np.array(paths, dtype=object),
        age=np.array([f[0] for f in fields]),
        gender=np.array([f[1] for f in fields]),
        identity=np.array(["image:" + p for p in paths], dtype=object),
        label_source="afad: folder",
        problem=np.array([f[2] for f in fields], dtype=object),
    )
    return common.Source("afad", table, release_dir, release_dir, common.CROPS,
                         "none in the release: each image is its own group",
                         read_release(os.path.join(release_dir, paths[0].split("/")[0])))
