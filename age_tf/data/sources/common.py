"""What every release adapter shares: the rows' columns, the CSV and folder readers, the
checks of names and numbers (see the package docstring)."""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import pandas as pd

from age_tf.errors import DataError

# The release's crops: the detector's box plus 40% of its size on each side (Rothe et al.,
# DEX), as IMDB-WIKI's and APPA-REAL's face files were cut; the default margin wherever a
# face is cropped.
RELEASE_MARGIN = 0.4
CROPS, FULL_PHOTOS = "crops", "full photos"  # each image is the face / crop its face box
COLUMNS = [
    "row",
    "full_path",
    "age",
    "identity",
    "gender",
    "race",
    "face_x1",
    "face_y1",
    "face_x2",
    "face_y2",
    "face_score",
    "second_face_score",
    "official_split",
    "folder",
    "aligned_bbox",
    "label_source",
    "problem",
]
# A release's CSVs are read whole: bounded like a manifest (the largest, IMDB-Clean's train
# CSV, is ~20 MB).
MAX_CSV_BYTES = 512 * 2**20
MAX_LISTED_FILES = 5_000_000


@dataclasses.dataclass
class Source:
    """A release read into rows, and what the release says about them."""

    format: str
    table: pd.DataFrame  # COLUMNS
    images_dir: str
    origin: str  # the file or folder named in messages and the report
    framing: str  # CROPS or FULL_PHOTOS
    identities: str  # how identity was found, or that the release names none
    release: dict  # release.json of a synthetic release ({} for a real one)


UNKNOWN = {
    "age": np.nan,
    "gender": np.nan,
    "race": "",
    "face_x1": np.nan,
    "face_y1": np.nan,
    "face_x2": np.nan,
    "face_y2": np.nan,
    "face_score": np.nan,
    "second_face_score": np.nan,
    "official_split": "",
    "folder": np.nan,  # the unified benchmark's split unit (facebase)
    "aligned_bbox": "",  # the aligned square's corners, 0-based (data/align.py's text)
    "label_source": "",
    "problem": "",
}


def table(n: int, **columns) -> pd.DataFrame:
    """A COLUMNS frame of n rows: the given columns, the rest at their 'unknown' value."""
    frame = pd.DataFrame({"row": np.arange(n)})
    for c in COLUMNS[1:]:
        frame[c] = columns.get(c, UNKNOWN.get(c))
    return frame


def checked_csv(
    path: str, required, max_bytes: int, what: str, fix: str, **read_kw
) -> pd.DataFrame:
    """A CSV no larger than max_bytes with the `required` columns (read_kw go to pandas).

    Raises:
      DataError: too large, unreadable, or lacking a column; names the file, says `fix`.
    """
    size = os.path.getsize(path)
    if size > max_bytes:
        raise DataError(
            f"{path}: {size / 2**20:,.0f} MB is too large for a {what} (at most "
            f"{max_bytes // 2**20:,} MB); {fix}"
        )
    try:
        header = csv_header(path)
        df = pd.read_csv(path, **read_kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable {what} ({e})") from e
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # pandas would rename the second to 'age.1' and read the first without a word
        raise DataError(
            f"{path}: column {', '.join(map(repr, twice))} appears more than once in "
            f"the header; which one holds the values cannot be told; {fix}"
        )
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))} (has: "
            f"{', '.join(map(str, df.columns))}); {fix}"
        )
    return df


def csv_header(path: str, max_bytes: int = 1 << 20) -> list[str]:
    """The column names of a CSV's first line (read within max_bytes)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = f.readline(max_bytes)
    rows = list(csv.reader([line]))
    return [c.strip() for c in rows[0]] if rows else []


def read_csv(path: str, required: tuple[str, ...]) -> pd.DataFrame:
    """A release CSV, every value as text (each adapter parses and judges its own columns).

    Raises:
      DataError: missing, too large, unreadable, or lacking a column (names the file).
    """
    if not os.path.isfile(path):
        folder, name = os.path.split(path)
        inner = release_inside(folder, lambda d: os.path.isfile(os.path.join(d, name)))
        raise DataError(
            f"{path}: not found; "
            + (
                f"{inner} looks like the release: pass --release_dir={inner}"
                if inner
                else "is --release_dir the folder the release unpacked to?"
            )
        )
    return checked_csv(
        path,
        required,
        MAX_CSV_BYTES,
        "release CSV",
        "is it the release's file?",
        dtype=str,
        keep_default_na=False,
    )


def numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(float)


def problems(*checks: tuple[np.ndarray, list[str] | str]) -> np.ndarray:
    """The first failing check's reason per row ('' where all pass); checks are
    (bad mask, reason or per-row reasons) in order."""
    n = len(checks[0][0])
    out = np.full(n, "", dtype=object)
    for bad, reason in checks:
        reasons = (
            np.full(n, reason, dtype=object)
            if isinstance(reason, str)
            else np.asarray(reason, dtype=object)
        )
        take = np.asarray(bad) & (out == "")
        out[take] = reasons[take]
    return out


def list_images(folder: str) -> list[str]:
    """The .jpg files directly in folder, sorted by name (the adapters' row order)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder; pass --release_dir=<the folder of the images>")
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            # Links and special files are listed too: the image check rejects each with its
            # reason (a dangling link or a FIFO must show in rejected.csv, not vanish).
            if entry.name.lower().endswith(".jpg") and not entry.is_dir():
                names.append(entry.name)
                if len(names) > MAX_LISTED_FILES:
                    raise DataError(
                        f"{folder}: more than {MAX_LISTED_FILES:,} images; is it "
                        "the release's folder?"
                    )
    if not names:
        inner = release_inside(folder, _has_jpg)
        raise DataError(
            f"{folder}: no .jpg file; "
            + (
                f"{inner} looks like the release: pass --release_dir={inner}"
                if inner
                else "is it the folder the release unpacked to?"
            )
        )
    return sorted(names)


def list_tree(folder: str, depth: int) -> list[str]:
    """The .jpg files exactly `depth` folders below `folder` ('a/b/x.jpg' for depth 2), sorted;
    what lies at another depth is not the release's and is left out.

    Raises:
      DataError: not a folder, no image at that depth, or more than MAX_LISTED_FILES.
    """
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder; pass --release_dir=<the release's folder>")
    found: list[str] = []

    def walk(path: str, rel: str, level: int) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            if level < depth:
                if e.is_dir(follow_symlinks=False):
                    walk(e.path, name, level + 1)
            elif e.name.lower().endswith(".jpg") and not e.is_dir():
                found.append(name)  # links and special files: the image check rejects them
                if len(found) > MAX_LISTED_FILES:
                    raise DataError(f"{folder}: more than {MAX_LISTED_FILES:,} images; is it "
                                    "the release's folder?")

    walk(folder, "", 0)
    if not found:
        raise DataError(f"{folder}: no .jpg file {depth} folder(s) down; is it the folder the "
                        "release unpacked to?")
    return found


def _has_jpg(folder: str) -> bool:
    with os.scandir(folder) as it:
        return any(e.name.lower().endswith(".jpg") for e in it)


def release_inside(folder: str, looks_right, depth: int = 2, max_entries: int = 1000) -> str | None:
    """The first subfolder (up to `depth` levels down, in name order) for which
    looks_right(path) holds: a release unpacked one level deeper than the folder given."""
    if depth == 0 or not os.path.isdir(folder):
        return None
    try:
        with os.scandir(folder) as it:
            subs = sorted(
                e.path for _, e in zip(range(max_entries), it) if e.is_dir(follow_symlinks=False)
            )
    except OSError:
        return None
    for sub in subs:
        if looks_right(sub):
            return sub
    for sub in subs:
        found = release_inside(sub, looks_right, depth - 1, max_entries)
        if found:
            return found
    return None


def whole_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits float() refuses."""
    return text.isascii() and text.isdigit()


def name_problem(name: str) -> str:
    """Why a file name cannot be kept in a manifest ('' when it can): a NUL byte (no file
    system has it), or bytes that are not UTF-8 (the manifest could not be written)."""
    if "\x00" in name:
        return "file name holds a NUL byte"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"file name {shown!r} is not UTF-8"
    return ""
