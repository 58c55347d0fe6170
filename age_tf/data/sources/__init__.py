"""One adapter per dataset release (a module each): its files -> one table of rows for
age-tf-prepare.

Every adapter returns the same columns, one row per image (or face) the release lists, in a
fixed order (the order the synthetic writers' ground truth follows):

  row, full_path (relative to images_dir), age (float, NaN when unreadable), identity,
  gender (IMDB-WIKI's code: 1 male, 0 female, NaN unknown), face_x1..face_y2 (the face box
  in MATLAB's 1-based pixels, NaN when the image is the crop), face_score,
  second_face_score (IMDB-WIKI only), official_split ('' or train/val/test), label_source,
  problem ('' or why the row's name or label cannot be used: it is rejected with it).

A row is never dropped here: what cannot be read is kept with its `problem`, so
rejected.csv gives a reason for every row of the release. This module is the registry: each
format, how it is read, where its images are by default.
"""

from __future__ import annotations

import os

from age_tf.data.sources import (
    afad,
    agedb,
    appa_real,
    cacd,
    facebase,
    fgnet,
    imdb_clean,
    imdb_wiki,
    morph,
    utkface,
)
from age_tf.data.sources.common import (  # noqa: F401  (the facts every reader shares)
    COLUMNS,
    CROPS,
    FULL_PHOTOS,
    RELEASE_MARGIN,
    Source,
    checked_csv,
    list_images,
    name_problem,
    release_inside,
)

FORMATS = ("imdb_wiki", "imdb_clean", "appa_real", "utkface", "agedb", "fgnet", "afad", "cacd",
           "morph", "facebase")
LABELS = appa_real.LABELS
OFFICIAL_SPLIT_FORMATS = ("imdb_clean", "appa_real", "cacd")  # releases with their own subsets


def default_images_dir(fmt: str, mat: str | None, release_dir: str | None,
                       database: str | None = None) -> str:
    """Where a format's images are when --images_dir is not given (a database file's paths
    start from the folder it is in)."""
    if fmt == "facebase":
        return os.path.dirname(os.path.abspath(database))
    if fmt == "imdb_wiki":
        base = os.path.dirname(os.path.abspath(mat))
        for name in ("imdb_crop", "wiki_crop"):
            if os.path.isdir(os.path.join(base, name)):
                return os.path.join(base, name)
        return os.path.join(base, "imdb_crop")
    if fmt == "imdb_clean":  # the full photos: imdb/ inside or beside the CSVs' folder
        for base in (release_dir, os.path.dirname(os.path.abspath(release_dir))):
            if os.path.isdir(os.path.join(base, "imdb")):
                return os.path.join(base, "imdb")
        return os.path.join(release_dir, "imdb")
    if fmt == "fgnet":
        return fgnet.images_dir(release_dir)
    if fmt == "cacd":
        return os.path.join(release_dir, cacd.IMAGES)
    return release_dir


def load(fmt: str, mat: str | None, release_dir: str | None, images_dir: str,
         label: str, database: str | None = None) -> Source:
    """The release of `fmt` read into rows (see the module docstring)."""
    if fmt == "facebase":
        return facebase.read(database, images_dir)
    if fmt == "imdb_wiki":
        return imdb_wiki.read(mat, images_dir)
    if fmt == "imdb_clean":
        return imdb_clean.read(release_dir, images_dir)
    if fmt == "appa_real":
        return appa_real.read(release_dir, label)
    readers = {"utkface": utkface.read, "agedb": agedb.read, "fgnet": fgnet.read,
               "afad": afad.read, "cacd": cacd.read, "morph": morph.read}
    return readers[fmt](release_dir)
