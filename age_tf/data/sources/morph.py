"""MORPH II (academic release): morph_2008_nonCommercial.csv, one row per photo.

Columns as the release documents them (id_num, picture_num, dob, doa, race, gender,
facial_hair, age, age_diff, glasses, photo); photo is the path below the release folder
(e.g. Album2/003201_00M21.JPG). About 55k photos of 13k people; no official split: people
are split apart (subject-exclusive), as the unified benchmark's folders are.
"""

from __future__ import annotations

import os

import numpy as np

from age_tf.data.metadata import read_release
from age_tf.data.sources import common

CSV = "morph_2008_nonCommercial.csv"
COLUMNS = ("id_num", "photo", "age", "gender", "race")
GENDERS = {"M": 1.0, "F": 0.0}
# The release's race codes: Black, White, Asian, Hispanic, Other.
RACES = {"B": "Black", "W": "White", "A": "Asian", "H": "Hispanic", "O": "Other"}


def read(release_dir: str) -> common.Source:
    path = os.path.join(release_dir, CSV)
    df = common.read_csv(path, COLUMNS)
    age = common.numbers(df["age"])
    person = df["id_num"].str.strip()
    gender = df["gender"].str.strip().str.upper()
    race = df["race"].str.strip().str.upper()
    photo = df["photo"].str.strip()
    problem = common.problems(
        (photo.eq("").to_numpy(), "no photo path"),
        (~np.isfinite(age), [f"age {a!r} is not a number" for a in df["age"]]),
        (~person.str.fullmatch(r"\d+").to_numpy(), [f"id_num {p!r} is not a number"
                                                    for p in df["id_num"]]),
        (~gender.isin(GENDERS).to_numpy(), [f"gender {g!r} is neither M nor F"
                                            for g in df["gender"]]),
    )  # a race that is missing or not a code is unknown (''), not a reason to drop the face
    table = common.table(
        len(df),
        full_path=photo.to_numpy(object),
        age=age,
        gender=gender.map(GENDERS).to_numpy(float),
        race=race.map(RACES).fillna("").to_numpy(object),
        identity=np.where(problem == "", "morph:" + person, "image:" + photo).astype(object),
        label_source="morph: age",
        problem=problem,
    )
    return common.Source("morph", table, release_dir, path, common.CROPS,
                         "the id_num of each row", read_release(path))
