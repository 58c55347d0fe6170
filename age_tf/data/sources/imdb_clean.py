"""IMDB-Clean: three CSVs of boxes and cleaned ages over the full IMDB photos."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from age_tf.data.metadata import read_release
from age_tf.data.sources import common

CSVS = {"train": "imdb_train_new.csv", "val": "imdb_valid_new.csv", "test": "imdb_test_new.csv"}
COLUMNS = ("filename", "age", "gender", "x_min", "y_min", "x_max", "y_max")
_NM = re.compile(r"(?:^|/)(nm\d+)_")


def read(release_dir: str, images_dir: str) -> common.Source:
    """IMDB-Clean's imdb_{train,valid,test}_new.csv over the full IMDB photos.

    The CSV boxes are 0-based pixel coordinates; they become the release's 1-based ones, so
    --crop_faces frames them as it frames IMDB-WIKI's face_location. Identity is the IMDb
    person id (nm...) of the file name.
    """
    parts = []
    for split, name in CSVS.items():
        df = common.read_csv(os.path.join(release_dir, name), COLUMNS)
        df["official_split"] = split
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    age = common.numbers(df["age"])
    box = np.stack([common.numbers(df[c]) for c in ("x_min", "y_min", "x_max", "y_max")], 1)
    gender = df["gender"].str.strip().str.upper().map({"M": 1.0, "F": 0.0}).to_numpy(float)
    nm = df["filename"].str.extract(_NM, expand=False)
    problem = common.problems(
        (~np.isfinite(age), [f"age {a!r} is not a number" for a in df["age"]]),
        (
            ~np.isfinite(box).all(1) | (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1]),
            "face box x_min,y_min,x_max,y_max is not a box",
        ),
    )
    table = common.table(
        len(df),
        full_path=df["filename"].to_numpy(object),
        age=age,
        identity=np.where(nm.notna(), "nm:" + nm.fillna(""), "path:" + df["filename"]).astype(
            object
        ),
        gender=gender,
        face_x1=box[:, 0] + 1,
        face_y1=box[:, 1] + 1,
        face_x2=box[:, 2] + 1,
        face_y2=box[:, 3] + 1,
        official_split=df["official_split"].to_numpy(object),
        label_source="imdb_clean: age",
        problem=problem,
    )
    return common.Source(
        "imdb_clean",
        table,
        images_dir,
        release_dir,
        common.FULL_PHOTOS,
        "the IMDb person id (nm...) in the file name",
        read_release(os.path.join(release_dir, CSVS["train"])),
    )
