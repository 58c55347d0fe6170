"""UTKFace: [age]_[gender]_[race]_[date&time].jpg(.chip.jpg), labels in the names."""

from __future__ import annotations

import os

import numpy as np

from age_tf.data.metadata import read_release
from age_tf.data.sources import common

# The race codes of UTKFace's names (its README).
RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}


def fields_of(name: str) -> tuple[float, float, str]:
    """(age, IMDB-WIKI gender code, problem) of one UTKFace file name."""
    stem = name[: -len(".jpg.chip.jpg")] if name.endswith(".jpg.chip.jpg") else name[:-4]
    fields = stem.split("_")
    if len(fields) != 4:
        return (
            np.nan,
            np.nan,
            (f"file name has {len(fields)} field(s), not age_gender_race_date&time"),
        )
    age, gender, race, _ = fields
    if not common.whole_number(age):
        return np.nan, np.nan, f"age {age!r} is not a number"
    if gender not in ("0", "1"):
        return float(age), np.nan, f"gender code {gender!r} is neither 0 (male) nor 1 (female)"
    if race not in ("0", "1", "2", "3", "4"):
        return float(age), np.nan, f"race code {race!r} is not 0-4"
    return float(age), 1.0 - float(gender), ""  # UTKFace: 0 male, 1 female


def read(release_dir: str) -> common.Source:
    """UTKFace: [age]_[gender]_[race]_[date&time].jpg(.chip.jpg), labels in the names."""
    names = common.list_images(release_dir)
    fields = [fields_of(n) for n in names]
    table = common.table(
        len(names),
        full_path=np.array(names, dtype=object),
        age=np.array([f[0] for f in fields]),
        gender=np.array([f[1] for f in fields]),
        identity=np.array(["image:" + n for n in names], dtype=object),
        race=np.array([RACES.get((n.split("_") + ["", "", ""])[2], "") for n in names], dtype=object),
        label_source="utkface: file name",
        problem=np.array([f[2] for f in fields], dtype=object),
    )
    return common.Source(
        "utkface",
        table,
        release_dir,
        release_dir,
        common.CROPS,
        "none in the release: each image is its own group",
        read_release(os.path.join(release_dir, names[0])),
    )
