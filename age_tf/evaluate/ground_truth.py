"""A synthetic set's ground_truth.csv joined to prepared rows: by release row, checked by path.

The truth file lists every release row (`row`, `full_path`, `rendered_age`, `label_age`,
`kind`, ...). Row numbers alone would match a truth file of any other release; the path each
row names must agree too, so the truth of another set is refused instead of scoring noise.
"""

from __future__ import annotations

import pandas as pd

from age_tf.data import prepared, sources
from age_tf.errors import DataError


def for_rows(truth_csv: str, rows: pd.DataFrame, columns=("rendered_age",)) -> pd.DataFrame:
    """The truth `columns` of each of `rows` (a manifest, or predictions with its `row` and
    `path`), in their order and with their index.

    Raises:
      DataError: the file is not a ground truth, lacks a row, or names another image for it.
    """
    need = ["row", "full_path", *columns]
    truth = sources.checked_csv(truth_csv, need, prepared.MAX_MANIFEST_BYTES, "ground_truth.csv",
                                "pass the ground_truth.csv age-tf-synth wrote beside the "
                                "release", dtype={"full_path": str})[need]
    if truth["row"].duplicated().any():
        raise DataError(f"{truth_csv}: row numbers listed twice; not a ground_truth.csv")
    joined = rows[["row", "path"]].merge(truth, on="row", how="left")
    joined.index = rows.index
    lacking = joined["full_path"].isna()
    if lacking.any():
        raise DataError(f"{truth_csv}: no truth for {int(lacking.sum())} of {len(rows)} rows "
                        f"(e.g. row {int(joined.loc[lacking, 'row'].iloc[0])}); is it the ground "
                        "truth of the release these data were prepared from?")
    other = joined["path"] != joined["full_path"]
    if other.any():
        first = joined[other].iloc[0]
        raise DataError(
            f"{truth_csv}: row {int(first['row'])} is {first['full_path']!r} there but "
            f"{first['path']!r} in the data ({int(other.sum())} of {len(rows)} rows differ): "
            "the ground truth of another release; pass the ground_truth.csv written with "
            "these images")
    return joined[list(columns)]
