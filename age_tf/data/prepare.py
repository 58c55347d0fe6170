"""A dataset release (IMDB-WIKI, IMDB-Clean, APPA-REAL, UTKFace, AgeDB) -> clean, leak-free
train/val/test manifests: every release through the same label, image and duplicate checks."""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import shutil
import tempfile
import time

import numpy as np
import pandas as pd
from absl import logging

from age_tf import fileio, labels, parallel, progress
from age_tf.config import field
from age_tf.data import align, dedup, detect, images, prepared, sources
from age_tf.data.dedup import DEFAULT_MAX_DISTANCE, DEFAULT_MIN_CORRELATION
from age_tf.data.split import SPLIT_NAMES, parse_fractions, stratified_group_split
from age_tf.errors import DataError

OUTPUT_FILES = (
    *(f"{s}.csv" for s in prepared.SPLITS), prepared.REJECTED, prepared.REPORT,
    prepared.AGE_FIGURE, prepared.FINGERPRINTS,
)
TEMP_PREFIX = ".prepare-"  # + pid: the outputs are written here, then moved in
MANIFEST_COLUMNS = [
    "path", "age", "identity", "gender", "face_x1", "face_y1", "face_x2", "face_y2",
    "width", "height", "conversion", "row", "label_source",
]
OFFICIAL = "official"
BENCHMARK = "benchmark"  # the unified benchmark's split of its folders (--benchmark_split)
WHOLE = "whole"  # every row in test: a dataset other models are tested on
# The study kept half of IMDB-WIKI's filtered images; the other releases are used whole.
STUDY_SAMPLE_FRACTION = 0.5


@dataclasses.dataclass
class PrepareConfig:
    """Parameters of one preparation run (the flags of `age-tf-prepare`)."""

    format: str = field("imdb_wiki", "The release's layout: imdb_wiki (--mat), or (with "
                        "--release_dir) imdb_clean, appa_real, utkface, agedb, fgnet, afad, "
                        "cacd, morph.", choices=sources.FORMATS)
    mat: str = field(None, "imdb.mat or wiki.mat from the IMDB-WIKI release (--format=imdb_wiki).")
    database: str = field(None, "The unified benchmark's database file (--format=facebase), "
                          "e.g. AgeDB.json; its img_path entries start from --images_dir.")
    release_dir: str = field(None, "The unpacked release of the other formats: IMDB-Clean's "
                             "CSV folder, appa-real-release/, UTKFace/, AgeDB/, FG-NET's "
                             "folder (images/), AFAD-Full/, the folder of CACD2000/ and "
                             "celebrity2000_meta.mat, MORPH's folder (its CSV, Album2/).")
    images_dir: str = field(None, "The images the release lists (default: imdb_crop/ or "
                            "wiki_crop/ beside --mat; for imdb_clean the full IMDB photos, "
                            "imdb/ in or beside --release_dir; FG-NET's images/, CACD2000/; "
                            "else --release_dir).")
    label: str = field("real", "APPA-REAL's label: real (real_age) or apparent "
                       "(apparent_age_avg, the mean rating).", choices=sources.LABELS)
    out_dir: str = field(None, "Where to write the manifests, report and figure.")
    min_face_score: float = field(3.0, "Keep faces with face_score >= this (IMDB-WIKI).")
    min_age: int = field(0, low=labels.MIN_AGE, high=labels.MAX_AGE,
                         help="Youngest age kept (years).")
    max_age: int = field(100, low=labels.MIN_AGE, high=labels.MAX_AGE,
                         help="Oldest age kept (years).")
    min_size: int = field(32, low=1, help="Smallest image side kept (pixels).")
    check_images: bool = field(True, "Open every image; --nocheck_images filters the metadata "
                               "alone (no dedup).")
    dedup: bool = field(True, "Remove exact and near-duplicate images.")
    align: bool = field(False, "Find each face's eyes and mouth (MTCNN, the largest face of "
                        "an image) and store the unified benchmark's aligned square, for "
                        "training with --align; rows whose release gives one keep it, a face "
                        "without landmarks is rejected with its reason.")
    dup_max_distance: int = field(DEFAULT_MAX_DISTANCE, low=0, high=15,
                                  help="dHash bits two near duplicates may differ in (0 = exact "
                                       "duplicates only).")
    dup_min_correlation: float = field(DEFAULT_MIN_CORRELATION, low=-1, high=1,
                                       help="Thumbnail correlation two near duplicates must reach.")
    sample_fraction: float | None = field(
        None, low=0, high=1, low_open=True,
        help=f"Share of the filtered images kept (default: {STUDY_SAMPLE_FRACTION:g} for "
             "imdb_wiki, as the study kept, 1 for the others).")
    split: str = field("0.6,0.2,0.2", "train,val,test fractions; 'official': the release's "
                       "own subsets (imdb_clean, appa_real, cacd); 'benchmark' (facebase): "
                       "the unified benchmark's folders of --benchmark_split; 'whole': every "
                       "image in test (a dataset other models are tested on).")
    benchmark_split: int = field(0, low=0, high=4, help="Which of the unified benchmark's five "
                                 "splits --split=benchmark takes (0-4).")
    identity_disjoint: bool = field(True, "Keep each person in one subset only.")
    allow_identity_overlap: bool = field(
        False, "With --split=benchmark, prepare even when the database puts one person in "
        "two subsets (refused by default: the benchmark's folders are subject-exclusive). "
        "Other given splits (official, a CSV's split column) are prepared with a warning that "
        "counts the people and faces shared.")
    seed: int = field(0, "Seed of the sample and the split.")
    workers: int | None = field(None, low=1, help="Image-check processes (default: all cores).")
    overwrite: bool = field(False, "Replace outputs already in --out_dir.")

    def validate(self) -> None:
        if self.split == OFFICIAL:
            if self.format not in sources.OFFICIAL_SPLIT_FORMATS:
                raise ValueError(f"--split=official: {self.format} has no official split; pass "
                                 "fractions such as --split=0.6,0.2,0.2")
        elif self.split == BENCHMARK:
            if self.format != "facebase":
                raise ValueError("--split=benchmark reads the unified benchmark's folders: "
                                 "only --format=facebase has them")
        elif self.split != WHOLE:
            parse_fractions(self.split)  # three, positive, summing to 1
        if self.format == "facebase":
            if not self.database:
                raise ValueError("--format=facebase needs --database=<the benchmark's database "
                                 "JSON, e.g. AgeDB.json> and --images_dir")
            if self.mat or self.release_dir:
                raise ValueError("--format=facebase reads --database (and --images_dir), not "
                                 "--mat or --release_dir")
        elif self.database:
            raise ValueError(f"--database is the unified benchmark's file (--format=facebase); "
                             f"--format={self.format} does not read it")
        elif self.format == "imdb_wiki":
            if not self.mat:
                raise ValueError("--format=imdb_wiki needs --mat=<imdb.mat or wiki.mat>")
            if self.release_dir:
                raise ValueError("--release_dir is for the other formats; IMDB-WIKI is read "
                                 "from --mat (pass --format=... for another release)")
        elif not self.release_dir:
            raise ValueError(f"--format={self.format} needs --release_dir=<the unpacked release>")
        elif self.mat:
            raise ValueError(f"--mat is IMDB-WIKI's; --format={self.format} reads --release_dir")
        elif not os.path.isdir(self.release_dir):
            raise ValueError(f"--release_dir={self.release_dir!r}: not a folder; give the folder "
                             "the release unpacked to")
        if self.align and not self.check_images:
            raise ValueError("--align finds landmarks in every image: it cannot run with "
                             "--nocheck_images")
        if self.label != "real" and self.format != "appa_real":
            raise ValueError(f"--label={self.label}: only appa_real has apparent ages")
        if self.min_age > self.max_age:
            raise ValueError(f"need --min_age <= --max_age, got {self.min_age}, {self.max_age}")
        fileio.check_writable_dir(self.out_dir, "out_dir")  # before the work, not after


def summary(cfg: PrepareConfig, report: dict) -> str:
    """The stage counts and split sizes of a preparation (what age-tf-prepare prints)."""
    stages = "\n".join(f"  {s['stage']:<28} {s['kept']:>9,}" for s in report["stages"])
    splits = ", ".join(f"{k} {v['images']:,}" for k, v in report["splits"].items())
    lines = [report["inputs"]["source"], stages, f"splits: {splits} ({report['split']})"]
    shared = overlap_text(report["identity_overlap"])
    if shared:
        lines.append(f"identity overlap: {shared}")
    if report["framing"] == sources.FULL_PHOTOS:
        lines.append("full photos: train and evaluate with --crop_faces (the face box + "
                     "--face_margin)")
    return "\n".join(lines + [f"wrote {os.path.abspath(cfg.out_dir)}"])


class _Stages:
    """Applies filters in order, counting survivors and recording every rejection."""

    def __init__(self, n: int):
        self.alive = np.ones(n, dtype=bool)
        self.counts = [{"stage": "all rows", "kept": n, "removed": 0}]
        self.rejected: list[pd.DataFrame] = []

    def apply(self, name: str, keep: np.ndarray, reasons, df: pd.DataFrame) -> None:
        """Keeps rows where `keep`; `reasons` is a string or an array aligned with df."""
        removed = self.alive & ~keep
        if isinstance(reasons, str):
            reason_col = np.full(int(removed.sum()), reasons, dtype=object)
        else:
            reason_col = np.asarray(reasons, dtype=object)[removed]
        self.rejected.append(
            pd.DataFrame({"row": df["row"].to_numpy()[removed], "path": df["full_path"].to_numpy()[removed],
                          "stage": name, "reason": reason_col})
        )
        self.alive &= keep
        self.counts.append({"stage": name, "kept": int(self.alive.sum()), "removed": int(removed.sum())})
        logging.info("%-28s kept %8d  removed %8d", name, self.alive.sum(), removed.sum())

    def rejected_frame(self) -> pd.DataFrame:
        return pd.concat(self.rejected, ignore_index=True) if self.rejected else pd.DataFrame(
            columns=["row", "path", "stage", "reason"])


def check_output_dir(out_dir: str, overwrite: bool) -> None:
    """Refuses to clobber earlier outputs unless asked to (before any work starts)."""
    existing = [f for f in OUTPUT_FILES if os.path.exists(os.path.join(out_dir, f))]
    if existing and not overwrite:
        raise DataError(
            f"{out_dir}: already holds {', '.join(existing)}; pass --overwrite to replace them "
            "or choose another --out_dir"
        )


def copy_prepared(src_dir: str, dst_dir: str, skip: tuple[str, ...]) -> None:
    """Copies a prepared folder's outputs byte for byte, except the files in `skip` (a
    derived folder, e.g. cleaned labels, writes those itself)."""
    os.makedirs(dst_dir, exist_ok=True)
    for name in OUTPUT_FILES:
        src = os.path.join(src_dir, name)
        if name not in skip and os.path.exists(src):
            shutil.copy2(src, os.path.join(dst_dir, name))


def validate_paths(paths: pd.Series, origin: str) -> None:
    """Every full_path must be relative and stay inside the images folder."""
    bad = []
    for p in paths:
        norm = posixpath.normpath(p.replace("\\", "/"))
        if not p or posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or (
            len(p) > 1 and p[1] == ":"):
            bad.append(p)
    if bad:
        raise DataError(
            f"{origin}: {len(bad)} full_path entr{'y is' if len(bad) == 1 else 'ies are'} empty, "
            f"absolute or escape the images folder (e.g. {bad[:3]}); full_path must be relative "
            "to --images_dir, like '17/10000217_1981-05-05_2009.jpg'"
        )


def metadata_filters(df: pd.DataFrame, stages: _Stages, cfg: PrepareConfig) -> None:
    """The release-metadata filters: IMDB-WIKI's face filters in the study's order, then the
    age range (for every release, after the names and labels it could not read)."""
    if cfg.format != "imdb_wiki":
        problem = df["problem"].to_numpy(object).copy()
        names = [sources.name_problem(str(p)) for p in df["full_path"]]
        problem = np.where(problem == "", names, problem)
        stages.apply("name and label read", problem == "", problem, df)
        return age_filter(df, stages, cfg)
    score = df["face_score"].to_numpy()
    stages.apply("face found", np.isfinite(score), "no face found (face_score is -inf)", df)
    second = df["second_face_score"].to_numpy()
    stages.apply("exactly one face", np.isnan(second), "second face detected", df)
    # NaN >= x is False, so a NaN score is rejected here too.
    stages.apply(f"face_score >= {cfg.min_face_score:g}", score >= cfg.min_face_score,
                 [f"face_score {s:.2f} < {cfg.min_face_score:g}" for s in score], df)
    age_filter(df, stages, cfg)


# A face box (or aligned square) must have at least this share of its area on the photo:
# one wholly off it crops to black, one a million times the photo's size shrinks the photo
# to a speck in the crop; real boxes reach past the edge only by their margin.
MIN_BOX_ON_PHOTO = 0.5


def boxes_on_photo(df: pd.DataFrame, width: np.ndarray, height: np.ndarray,
                   face_boxes: bool = True):
    """Which rows' face boxes (1-based pixels, as the release gives them; with face_boxes)
    and aligned squares (where a row has one) lie mostly on their photo, with the reason for
    the rest. (Boxes that are not boxes were rejected by the adapter.)

    Returns:
      (bool mask, per-row reasons).
    """
    n = len(df)
    width, height = np.asarray(width, float), np.asarray(height, float)
    ok = np.ones(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    if face_boxes:
        # 1-based corners -> the 0-based pixel span [x1 - 1, x2) the crop takes.
        x1, y1, x2, y2 = (df[c].to_numpy(float) for c in ("face_x1", "face_y1", "face_x2",
                                                           "face_y2"))
        share = _share_on_photo(x1 - 1, y1 - 1, x2, y2, width, height)
        bad = ~(share >= MIN_BOX_ON_PHOTO)
        ok &= ~bad
        for i in np.flatnonzero(bad):
            reasons[i] = _off_photo_text("face box", (x1[i], y1[i], x2[i], y2[i]), share[i],
                                         width[i], height[i])
    squares = df["aligned_bbox"].fillna("").astype(str).to_numpy() if "aligned_bbox" in df \
        else np.full(n, "")
    for i in np.flatnonzero(squares != ""):
        try:
            corners = align.parse_corners_text(squares[i])
        except ValueError as e:
            share, why = 0.0, f"aligned_bbox {squares[i][:60]!r}: {e}"
        else:
            (a, b), (c, d) = corners.min(0), corners.max(0)
            share = float(_share_on_photo(a, b, c, d, width[i], height[i]))
            # Shown 1-based, as the database file gives the corners.
            why = _off_photo_text("aligned square", (a + 1, b + 1, c + 1, d + 1), share,
                                  width[i], height[i])
        if not share >= MIN_BOX_ON_PHOTO and ok[i]:
            ok[i], reasons[i] = False, why
    return ok, reasons


def _share_on_photo(x1, y1, x2, y2, width, height) -> np.ndarray:
    """The share of each box [x1, x2) x [y1, y2) (0-based) that lies on its width x height
    photo (0 where nothing does)."""
    with np.errstate(invalid="ignore", over="ignore"):
        inside = (np.clip(np.minimum(x2, width) - np.maximum(x1, 0), 0, None)
                  * np.clip(np.minimum(y2, height) - np.maximum(y1, 0), 0, None))
        area = (np.asarray(x2, float) - x1) * (np.asarray(y2, float) - y1)
        return np.where(area > 0, inside / np.where(area > 0, area, 1), 0.0)


def _off_photo_text(what: str, box, share: float, width: float, height: float) -> str:
    shown = ", ".join(f"{v:.6g}" for v in box)
    where = ("lies outside" if share == 0 else "has less than 1% of its area on"
             if share < 0.01 else f"has only {share:.0%} of its area on")
    return f"{what} ({shown}) {where} the {width:g}x{height:g} photo"


def age_filter(df: pd.DataFrame, stages: _Stages, cfg: PrepareConfig) -> None:
    age = df["age"].to_numpy(float)
    valid = np.isfinite(age)
    in_range = valid & (age >= cfg.min_age) & (age <= cfg.max_age)
    reasons = np.where(valid, [f"age {a:g} outside {cfg.min_age}..{cfg.max_age}" for a in age],
                       "invalid dob (not a date)")
    stages.apply(f"age {cfg.min_age}..{cfg.max_age}", in_range, reasons, df)


def prepare(cfg: PrepareConfig) -> dict:
    """Runs the whole preparation and writes the outputs.

    Args:
      cfg: paths and parameters.

    Returns:
      The report (also written to the folder's report file, prepared.REPORT).

    Raises:
      DataError: bad input (file, struct, paths) or nothing left after filtering; raised
        before any output is written.
    """
    start = time.monotonic()
    cfg.validate()
    if not cfg.images_dir:
        cfg = dataclasses.replace(cfg, images_dir=sources.default_images_dir(
            cfg.format, cfg.mat, cfg.release_dir, cfg.database))
    check_output_dir(cfg.out_dir, cfg.overwrite)
    if cfg.check_images and not os.path.isdir(cfg.images_dir):
        raise DataError(
            f"{cfg.images_dir}: images folder not found; pass --images_dir=<the folder of the "
            "images the release lists> or --nocheck_images to filter the metadata alone"
        )
    source = sources.load(cfg.format, cfg.mat, cfg.release_dir, cfg.images_dir, cfg.label,
                          cfg.database)
    df = source.table
    validate_paths(df["full_path"], source.origin)
    logging.info("%s: %d rows", source.origin, len(df))
    stages = _Stages(len(df))
    metadata_filters(df, stages, cfg)

    info_cols = {"width": np.zeros(len(df), np.int64), "height": np.zeros(len(df), np.int64),
                 "conversion": np.full(len(df), "", dtype=object)}
    dup_report: dict = {"skipped": True}
    info_of_row: dict = {}
    if cfg.check_images:
        idx = np.flatnonzero(stages.alive)
        root = os.path.abspath(cfg.images_dir)
        infos = images.check_images(
            [os.path.join(root, df["full_path"].iat[i]) for i in idx], cfg.min_size, cfg.workers,
            root=root)
        ok = np.zeros(len(df), dtype=bool)
        reasons = np.full(len(df), "", dtype=object)
        for i, info in zip(idx, infos):
            info_of_row[i] = info
            ok[i], reasons[i] = info.ok, info.reason
            info_cols["width"][i], info_cols["height"][i] = info.width, info.height
            info_cols["conversion"][i] = info.conversion
        stages.apply("image usable", ok, reasons, df)
        inside, why = boxes_on_photo(df, info_cols["width"], info_cols["height"],
                                     face_boxes=source.framing == sources.FULL_PHOTOS)
        has_squares = "aligned_bbox" in df and (df["aligned_bbox"].fillna("") != "").any()
        if source.framing == sources.FULL_PHOTOS or has_squares:
            stages.apply("face box on the photo", inside | ~stages.alive, why, df)
        if cfg.dedup:
            usable = [(i, info) for i, info in zip(idx, infos) if info.ok]
            dup_report = _deduplicate(df, stages, usable, cfg)
        if cfg.align:
            _align(df, stages, cfg)
    else:
        logging.warning("--nocheck_images: image checks and duplicate removal skipped")
        # Without the exact-duplicate search, a path listed twice would reach the manifests
        # twice (with two ages, perhaps): each path is kept once, at its first row.
        first = ~df["full_path"].duplicated().to_numpy()
        stages.apply("path listed once", first | ~stages.alive,
                     "the same path on an earlier row", df)

    if not stages.alive.any():
        raise DataError(
            f"{source.origin}: no image is left after filtering (see the stage counts above); "
            "check --images_dir, --min_face_score and --min_size"
        )
    fraction = sample_fraction(cfg)
    alive_idx = np.flatnonzero(stages.alive)
    rng = np.random.default_rng(cfg.seed)
    n_keep = max(1, int(round(len(alive_idx) * fraction)))
    sampled = np.zeros(len(df), dtype=bool)
    sampled[rng.choice(alive_idx, size=n_keep, replace=False)] = True
    stages.apply(f"sample {fraction:g}", sampled,
                 f"not drawn in the --sample_fraction={fraction:g} sample", df)

    final = np.flatnonzero(stages.alive)
    if len(final) < 3:
        raise DataError(f"{source.origin}: only {len(final)} image(s) left, too few for three "
                        "subsets")
    assign = assign_subsets(df.iloc[final], cfg, source)
    overlap = identity_overlap(df["identity"].to_numpy()[final], assign)
    check_identity_overlap(overlap, cfg, source)
    manifest = df.iloc[final].copy()
    for k, v in info_cols.items():
        manifest[k] = v[final]
    manifest = manifest.rename(columns={"full_path": "path"})
    ages = manifest["age"].to_numpy(float)
    manifest["age"] = ages.astype(np.int64) if (ages == np.round(ages)).all() else ages
    # A release that names a group (race), the benchmark's folders or aligned squares keeps
    # them; the others' manifests stay as they were.
    columns = MANIFEST_COLUMNS + [c for c, empty in (("race", ""), ("aligned_bbox", ""))
                                  if (manifest[c] != empty).any()]
    if manifest["folder"].notna().any():
        manifest["folder"] = manifest["folder"].astype("Int64")
        columns.append("folder")
    manifests = {name: manifest[assign == s][columns] for s, name in enumerate(SPLIT_NAMES)}

    report = _report(cfg, source, stages, manifests, dup_report, info_cols["conversion"][final],
                     overlap)
    report["seconds"] = round(time.monotonic() - start, 2)
    kept = [i for i in final if i in info_of_row]
    _write_outputs(cfg, manifests, stages.rejected_frame(), report,
                   (df["full_path"].to_numpy()[kept].tolist(), [info_of_row[i] for i in kept]))
    logging.info("wrote %s in %.1fs: %s", cfg.out_dir, report["seconds"],
                 {k: len(v) for k, v in manifests.items()})
    return report


ALIGN_CHUNK = 32  # images per detection task


def _align(df: pd.DataFrame, stages: _Stages, cfg: PrepareConfig) -> None:
    """Stores an aligned square for every surviving row without one (detect.landmark_squares
    in worker processes); rows where no face is found are rejected."""
    todo = np.flatnonzero(stages.alive & (df["aligned_bbox"].fillna("").to_numpy() == ""))
    root = os.path.abspath(cfg.images_dir)
    paths = [os.path.join(root, df["full_path"].iat[i]) for i in todo]
    chunks = parallel.chunked(paths, ALIGN_CHUNK)
    workers = min(cfg.workers or os.cpu_count() or 1, len(chunks))
    with progress.Bar(len(paths), "finding landmarks") as bar:
        results = parallel.map_in_processes(
            detect.landmark_squares, [(c, detect.DETECT_SIDE, 0.9) for c in chunks], workers,
            on_done=lambda i: bar.update(len(chunks[i])))
    found = [r for chunk in results for r in chunk]
    reasons = np.full(len(df), "", dtype=object)
    for i, (square, reason) in zip(todo, found):
        df.at[df.index[i], "aligned_bbox"] = square
        reasons[i] = reason
    stages.apply("aligned (landmarks found)", reasons == "", reasons, df)


def sample_fraction(cfg: PrepareConfig) -> float:
    """--sample_fraction, or its default: the study's half for IMDB-WIKI, all for the rest."""
    if cfg.sample_fraction is not None:
        return cfg.sample_fraction
    return STUDY_SAMPLE_FRACTION if cfg.format == "imdb_wiki" else 1.0


def assign_subsets(rows: pd.DataFrame, cfg: PrepareConfig, source=None) -> np.ndarray:
    """0/1/2 (train/val/test) per row (-1: in none): the release's own subsets with
    --split=official, the benchmark's folders with --split=benchmark, all in test with
    --split=whole, else the age-stratified split (by identity unless --noidentity_disjoint)."""
    if cfg.split == WHOLE:
        return np.full(len(rows), 2)
    if cfg.split == BENCHMARK:
        return sources.facebase.benchmark_subsets(rows["folder"].to_numpy(float),
                                                  source.release["folders"], cfg.benchmark_split)
    if cfg.split == OFFICIAL:
        return rows["official_split"].map({n: i for i, n in enumerate(SPLIT_NAMES)}).to_numpy(int)
    groups = rows["identity"].to_numpy() if cfg.identity_disjoint else np.arange(len(rows))
    ages = np.round(rows["age"].to_numpy(float)).astype(np.int64)
    return stratified_group_split(ages, groups, parse_fractions(cfg.split), cfg.seed)


def _deduplicate(df, stages: _Stages, usable, cfg: PrepareConfig) -> dict:
    """Groups duplicates among the usable images and keeps one per group."""
    if not usable:
        stages.apply("duplicates removed", stages.alive, "", df)
        return {"groups_with_duplicates": 0, "removed": 0}
    idx = np.array([i for i, _ in usable])
    infos = [info for _, info in usable]
    group, stats = dedup.group_duplicates(
        [i.sha256 for i in infos],
        np.array([i.dhash for i in infos], dtype=np.uint64),
        np.stack([i.thumb for i in infos]),
        max_distance=cfg.dup_max_distance,
        min_correlation=cfg.dup_min_correlation,
    )
    keep_local = dedup.choose_kept(group, np.array([i.width * i.height for i in infos]))
    keep = stages.alive.copy()
    keep[idx[~keep_local]] = False
    reasons = np.full(len(df), "", dtype=object)
    paths = df["full_path"].to_numpy()
    kept_of_group = {int(group[k]): k for k in np.flatnonzero(keep_local)}
    n_exact = 0
    for k in np.flatnonzero(~keep_local):
        twin = kept_of_group[int(group[k])]
        same = infos[k].sha256 == infos[twin].sha256
        n_exact += same
        reasons[idx[k]] = f"{'exact' if same else 'near'} duplicate of {paths[idx[twin]]}"
    stages.apply("duplicates removed", keep, reasons, df)
    sizes = np.bincount(group)
    return {
        **stats,
        "groups_with_duplicates": int((sizes > 1).sum()),
        "removed": int((~keep_local).sum()),
        "removed_exact": int(n_exact),
        "removed_near": int((~keep_local).sum() - n_exact),
    }


def _report(cfg, source: sources.Source, stages, manifests, dup_report, conversions,
            overlap: dict) -> dict:
    splits = {}
    for name, m in manifests.items():
        ages = m["age"].to_numpy()
        splits[name] = {
            "images": len(m),
            "identities": int(m["identity"].nunique()),
            "age_mean": round(float(ages.mean()), 2) if len(ages) else None,
            "age_median": float(np.median(ages)) if len(ages) else None,
            "age_std": round(float(ages.std()), 2) if len(ages) else None,
        }
    rej = stages.rejected_frame()
    # Group reasons by their kind, not the per-row text ("face_score 2.10 < 3" -> one key).
    kinds = rej["reason"].str.replace(r"'[^']*'", "X", regex=True).str.replace(
        r"-?\d+(\.\d+)?", "N", regex=True).str.replace(
        r" of .*$", "", regex=True).str.replace(r" \(.*\)$", "", regex=True)
    conv = pd.Series([c for c in conversions if c]).value_counts()
    inputs = {"format": cfg.format, "source": os.path.abspath(source.origin),
              "images_dir": os.path.abspath(cfg.images_dir), "rows": len(source.table),
              "release": source.release}
    if cfg.format == "imdb_wiki":
        inputs["mat"] = os.path.abspath(cfg.mat)
    return {
        "inputs": inputs,
        "params": dataclasses.asdict(cfg),
        "framing": source.framing,
        "labels": sorted(set(source.table["label_source"])),
        "identities": source.identities,
        "split": split_text(cfg, source),
        "identities_in_two_subsets": overlap["people"],
        "identity_overlap": overlap,
        "stages": stages.counts,
        "removed_by_reason": {k: int(v) for k, v in kinds.value_counts().items()},
        "duplicates": dup_report,
        "converted_on_load": {k: int(v) for k, v in conv.items()},
        "splits": splits,
    }


def identity_overlap(identity: np.ndarray, assign: np.ndarray) -> dict:
    """Who is in more than one subset: the people, their faces per subset, a few examples.

    Args:
      identity: each row's person.
      assign: each row's subset (0/1/2 = train/val/test; -1 = in none).

    Returns:
      {"people": n, "faces": {subset: faces of those people in it}, "examples": [...]}.
    """
    frame = pd.DataFrame({"identity": identity, "subset": assign})
    frame = frame[frame["subset"] >= 0]
    subsets = frame.groupby("identity")["subset"].nunique()
    shared = subsets.index[subsets > 1]
    rows = frame[frame["identity"].isin(shared)]
    counts = rows["subset"].value_counts()
    return {"people": int(len(shared)),
            "faces": {name: int(counts.get(i, 0)) for i, name in enumerate(SPLIT_NAMES)},
            "examples": [str(p) for p in sorted(map(str, shared))[:3]]}


def overlap_text(overlap: dict) -> str:
    """'3 people have faces in more than one subset (train 12, val 4, test 3 of their faces;
    e.g. ...)', or '' when nobody does."""
    if not overlap["people"]:
        return ""
    faces = ", ".join(f"{k} {v:,}" for k, v in overlap["faces"].items())
    return (f"{overlap['people']:,} {'person has' if overlap['people'] == 1 else 'people have'} "
            f"faces in more than one subset ({faces} of their faces; e.g. "
            f"{', '.join(overlap['examples'])})")


def check_identity_overlap(overlap: dict, cfg: PrepareConfig, source) -> None:
    """A given split that puts one person in two subsets is said (the count), and refused
    under --split=benchmark, whose folders are subject-exclusive by definition.

    Raises:
      DataError: --split=benchmark with an overlap and no --allow_identity_overlap.
    """
    text = overlap_text(overlap)
    if not text:
        return
    if cfg.split == BENCHMARK and not cfg.allow_identity_overlap:
        raise DataError(
            f"{source.origin}: {text}, but the benchmark's folders are subject-exclusive: a "
            "person in two folders is a mistake in the database file (check its id_num and "
            "folder); pass --allow_identity_overlap to prepare it anyway")
    if cfg.split in (OFFICIAL, BENCHMARK):
        logging.warning("%s: the given split is not identity-disjoint: %s; test figures of "
                        "those people are not of unseen faces", source.origin, text)


def split_text(cfg: PrepareConfig, source) -> str:
    """How the subsets were made, as the report states it."""
    if cfg.split == OFFICIAL:
        return "the release's own subsets"
    if cfg.split == WHOLE:
        return "whole: every image in test"
    if cfg.split == BENCHMARK:
        if source.release.get("folders") == "official":
            return "the unified benchmark's: the official folders 0/1/2 (train/val/test)"
        train, val, test = sources.facebase.BENCHMARK_SPLITS[cfg.benchmark_split]
        return (f"the unified benchmark's split {cfg.benchmark_split}: folders "
                f"{list(train)} train, {list(val)} val, {list(test)} test")
    return f"{cfg.split}, age-stratified" + (", by identity" if cfg.identity_disjoint else "")


def _writable_text(value):
    if not isinstance(value, str):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _write_outputs(cfg, manifests, rejected: pd.DataFrame, report: dict, prints) -> None:
    """Writes every output in a scratch folder, then moves them into place.

    `prints` = (paths, ImageInfos) of the kept images: fingerprints.npz, which the audit
    reuses instead of reading every image again (empty with --nocheck_images).
    """
    os.makedirs(cfg.out_dir, exist_ok=True)
    fileio.remove_stale_temp_dirs(cfg.out_dir, TEMP_PREFIX)
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=cfg.out_dir)
    try:
        for name, m in manifests.items():
            m.to_csv(os.path.join(tmp, f"{name}.csv"), index=False)
        # A name that is not UTF-8 (rejected for it) is written with its bytes escaped.
        rejected = rejected.assign(path=rejected["path"].map(_writable_text))
        rejected.sort_values("row").to_csv(os.path.join(tmp, prepared.REJECTED), index=False)
        with open(os.path.join(tmp, prepared.REPORT), "w") as f:
            json.dump(report, f, indent=2, default=str)
        from age_tf import plots  # matplotlib: for the figure, not for --help

        plots.plot_age_distribution({k: v["age"].to_numpy() for k, v in manifests.items()},
                                    os.path.join(tmp, prepared.AGE_FIGURE))
        images.save_fingerprints(os.path.join(tmp, prepared.FINGERPRINTS), *prints,
                                 os.path.abspath(cfg.images_dir))
        for f in OUTPUT_FILES:
            os.replace(os.path.join(tmp, f), os.path.join(cfg.out_dir, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
