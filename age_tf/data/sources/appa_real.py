"""APPA-REAL: gt_avg_{train,valid,test}.csv and the _face.jpg crops."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from age_tf.data.metadata import read_release
from age_tf.data.sources import common

LABELS = ("real", "apparent")
# Its subsets, by the name its folders and CSVs use -> the manifest's split.
SPLIT_OF_FILE = {"train": "train", "valid": "val", "test": "test"}
CSV = "gt_avg_{}.csv"  # one per subset, of the mean ratings and real ages
COLUMNS = ("file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age")


def read(release_dir: str, label: str) -> common.Source:
    """APPA-REAL's gt_avg_{train,valid,test}.csv, the X.jpg_face.jpg crops (40% margin).

    `label`: 'real' (real_age) or 'apparent' (apparent_age_avg, the mean of the ratings).
    The release names no person: each image is its own group.
    """
    parts = []
    for file_split, split in SPLIT_OF_FILE.items():
        df = common.read_csv(os.path.join(release_dir, CSV.format(file_split)), COLUMNS)
        df["full_path"] = file_split + "/" + df["file_name"].str.strip() + "_face.jpg"
        df["official_split"] = split
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    column = "real_age" if label == "real" else "apparent_age_avg"
    age = common.numbers(df[column])
    problem = common.problems(
        (~np.isfinite(age), [f"{column} {a!r} is not a number" for a in df[column]])
    )
    table = common.table(
        len(df),
        full_path=df["full_path"].to_numpy(object),
        age=age,
        identity=("image:" + df["full_path"]).to_numpy(object),
        official_split=df["official_split"].to_numpy(object),
        label_source=f"appa_real: {column}",
        problem=problem,
    )
    return common.Source(
        "appa_real",
        table,
        release_dir,
        release_dir,
        common.CROPS,
        "none in the release: each image is its own group",
        read_release(os.path.join(release_dir, CSV.format("train"))),
    )
