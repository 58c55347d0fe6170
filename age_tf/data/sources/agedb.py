"""AgeDB: {id}_{name}_{age}_{gender}.jpg; identity from the name."""

from __future__ import annotations

import os

import numpy as np

from age_tf.data.metadata import read_release
from age_tf.data.sources import common


def fields_of(name: str) -> tuple[float, float, str, str]:
    """(age, gender code, person, problem) of one AgeDB file name ({id}_{name}_{age}_{g})."""
    tokens = name[:-4].split("_")
    if len(tokens) < 4:
        return np.nan, np.nan, "", f"file name has {len(tokens)} field(s), not id_name_age_gender"
    person, age, gender = "_".join(tokens[1:-2]), tokens[-2], tokens[-1].lower()
    if not person:
        return np.nan, np.nan, "", "no name between the id and the age"
    if not common.whole_number(age):
        return np.nan, np.nan, person, f"age {age!r} is not a number"
    if gender not in ("m", "f"):
        return float(age), np.nan, person, f"gender {tokens[-1]!r} is neither m nor f"
    return float(age), 1.0 if gender == "m" else 0.0, person, ""


def read(release_dir: str) -> common.Source:
    """AgeDB: {id}_{name}_{age}_{gender}.jpg; identity from the name."""
    names = common.list_images(release_dir)
    fields = [fields_of(n) for n in names]
    table = common.table(
        len(names),
        full_path=np.array(names, dtype=object),
        age=np.array([f[0] for f in fields]),
        gender=np.array([f[1] for f in fields]),
        identity=np.array(
            [f"name:{f[2]}" if f[2] else f"image:{n}" for f, n in zip(fields, names)], dtype=object
        ),
        label_source="agedb: file name",
        problem=np.array([f[3] for f in fields], dtype=object),
    )
    return common.Source(
        "agedb",
        table,
        release_dir,
        release_dir,
        common.CROPS,
        "the name in the file name",
        read_release(os.path.join(release_dir, names[0])),
    )
