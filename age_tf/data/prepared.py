"""A prepared folder (what age-tf-prepare writes), read through one typed, checked reader.

Every other module asks a `PreparedDir` for the folder's facts (its images folder, framing,
release, split sizes, stages) and its manifests, so the file names and the report's layout
are known here only, and what was written by hand or damaged since is named on reading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import pandas as pd

from age_tf import labels
from age_tf.data import sources
from age_tf.errors import DataError

REPORT = "report.json"
REJECTED = "rejected.csv"
AGE_FIGURE = "age_distribution.png"
FINGERPRINTS = "fingerprints.npz"
SPLITS = ("train", "val", "test")
MAX_REPORT_BYTES = 64 << 20  # a report is a few KB; a larger file is not one

# A manifest is read whole: beyond this it is not one age-tf-prepare wrote (158k real IMDB
# faces take ~30 MB), and reading it could take the machine's memory.
MAX_MANIFEST_BYTES = 1 << 30
REQUIRED_COLUMNS = ("path", "age")


@dataclasses.dataclass(frozen=True)
class PreparedDir:
    """The paths and facts of one prepared folder."""

    root: str

    def file(self, name: str) -> str:
        """A file of the folder: REPORT, REJECTED, AGE_FIGURE, FINGERPRINTS, or a manifest."""
        return os.path.join(self.root, name)

    @property
    def report_path(self) -> str:
        return self.file(REPORT)

    def manifest_path(self, split: str) -> str:
        return self.file(f"{split}.csv")

    def exists(self) -> bool:
        """age-tf-prepare finished here (its report is written last)."""
        return os.path.isfile(self.report_path)

    def report(self) -> dict:
        """report.json, checked: a JSON object with `inputs.images_dir` and `splits`.

        Raises:
          FileNotFoundError: no report (not a prepared folder; says what to pass).
          DataError: unreadable, too large or missing a field (names the file and field).
        """
        path = self.report_path
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: --data_dir must be an output folder of age-tf-prepare")
        if os.path.getsize(path) > MAX_REPORT_BYTES:
            raise DataError(f"{path}: too large for an age-tf-prepare report; prepare the data "
                            "again")
        try:
            with open(path, encoding="utf-8") as f:
                report = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not readable JSON ({e}); prepare the data again") from e
        inputs = report.get("inputs") if isinstance(report, dict) else None
        if not isinstance(inputs, dict) or not isinstance(inputs.get("images_dir"), str):
            raise DataError(f"{path}: not an age-tf-prepare report (no inputs.images_dir); "
                            "prepare the data again")
        if not isinstance(report.get("splits"), dict):
            raise DataError(f"{path}: field 'splits' missing or not an object; prepare the "
                            "data again")
        return report

    def images_dir(self) -> str:
        return self.report()["inputs"]["images_dir"]

    def framing(self) -> str:
        """sources.CROPS or sources.FULL_PHOTOS, as age-tf-prepare recorded (folders from
        before it did, and folders without a report, hold crops)."""
        try:
            framing = self.report().get("framing", sources.CROPS)
        except (OSError, DataError):
            return sources.CROPS
        return framing if framing in (sources.CROPS, sources.FULL_PHOTOS) else sources.CROPS

    def format(self) -> str:
        return self.report()["inputs"].get("format", "imdb_wiki")

    def name(self) -> str:
        """'<format> (<folder>)', for tables that list several prepared folders."""
        return f"{self.format()} ({os.path.basename(os.path.normpath(self.root))})"

    def manifest(self, split: str) -> tuple[pd.DataFrame, str]:
        """`<split>.csv`, checked (read_manifest), and the images folder it is relative to.

        Raises:
          FileNotFoundError: the manifest or report is missing (names the file and the fix).
          DataError: a column is missing or a value is unusable (names file, column and row).
        """
        path = self.manifest_path(split)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: --data_dir must be an output folder of age-tf-prepare")
        images_dir = self.images_dir()
        return read_manifest(path), images_dir

    def fingerprint(self, splits=("train", "val")) -> str:
        """A hash of the manifests of `splits` (what a resumed run must train on)."""
        h = hashlib.sha256()
        for split in splits:
            with open(self.manifest_path(split), "rb") as f:
                h.update(f.read())
        return h.hexdigest()[:16]


def load_manifest(data_dir: str, split: str) -> tuple[pd.DataFrame, str]:
    """(manifest, images_dir) of one split of a prepared folder (PreparedDir.manifest)."""
    return PreparedDir(data_dir).manifest(split)


def read_manifest(path: str) -> pd.DataFrame:
    """One manifest CSV, checked: a path and an age on every row, ages numbers in
    [labels.MIN_AGE, labels.MAX_AGE], no path twice.

    Raises:
      DataError: naming the file, the column and the first bad row (its line in the file).
    """
    df = sources.checked_csv(path, REQUIRED_COLUMNS, MAX_MANIFEST_BYTES, "manifest CSV",
                             "manifests come from age-tf-prepare", dtype={"path": str})

    def bad(column: str, mask, what: str):
        i = int(np.flatnonzero(np.asarray(mask))[0])
        value = df[column].iloc[i]
        value = repr(value) if isinstance(value, str) else getattr(value, "item", lambda: value)()
        n = int(np.sum(mask))
        raise DataError(f"{path}: column {column!r}, line {i + 2}: {value} {what}"
                        + (f" ({n} rows in all)" if n > 1 else ""))

    if df["path"].isna().any() or (df["path"].str.strip() == "").any():
        bad("path", df["path"].isna() | (df["path"].fillna("").str.strip() == ""), "is empty")
    ages = pd.to_numeric(df["age"], errors="coerce")
    if ages.isna().any() or not np.isfinite(ages).all():
        bad("age", ages.isna() | ~np.isfinite(ages.fillna(0)), "is not a number of years")
    out_of_range = (ages < labels.MIN_AGE) | (ages > labels.MAX_AGE)
    if out_of_range.any():
        bad("age", out_of_range, f"is outside {labels.MIN_AGE}-{labels.MAX_AGE} years")
    twice = df["path"].duplicated()
    if twice.any():
        bad("path", twice, "is listed twice")
    df["age"] = ages
    return df
