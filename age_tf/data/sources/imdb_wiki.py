"""IMDB-WIKI: imdb.mat / wiki.mat and their face crops."""

from __future__ import annotations

import numpy as np

from age_tf.data.metadata import load_metadata, read_release
from age_tf.data.sources import common


def read(mat: str, images_dir: str) -> common.Source:
    """imdb.mat / wiki.mat and their crops (metadata.load_metadata)."""
    df = load_metadata(mat)
    table = common.table(
        len(df),
        full_path=df["full_path"].to_numpy(object),
        age=df["age"].astype("Float64").to_numpy(float, na_value=np.nan),
        identity=df["identity"].to_numpy(object),
        gender=df["gender"].to_numpy(),
        face_x1=df["face_x1"].to_numpy(),
        face_y1=df["face_y1"].to_numpy(),
        face_x2=df["face_x2"].to_numpy(),
        face_y2=df["face_y2"].to_numpy(),
        face_score=df["face_score"].to_numpy(),
        second_face_score=df["second_face_score"].to_numpy(),
        label_source="imdb_wiki: photo_taken - dob",
    )
    kind = "celebrity id" if df["identity"].str.startswith("celeb:").any() else "name"
    return common.Source(
        "imdb_wiki",
        table,
        images_dir,
        mat,
        common.CROPS,
        f"the release's {kind}",
        read_release(mat),
    )
