"""Writes a synthetic IMDB-WIKI dataset in the release format, with known defects (and, through
formats.py, the same faces in the layouts of IMDB-Clean, APPA-REAL, UTKFace and AgeDB).

Output: `<out_dir>/imdb.mat` (same struct and fields as the release), the face crops as
`<out_dir>/imdb_crop/NN/nm<id>_rm<id>_<Y-M-D>_<year>.jpg`, and `ground_truth.csv` saying
what every row really is (rendered age vs label, which rows are duplicates of which,
which files are broken) so that tests and benchmarks can score preparation and audit.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os

import numpy as np
import pandas as pd
import scipy.io
from absl import logging
from PIL import Image

from age_tf import fileio, parallel, progress
from age_tf.config import field
from age_tf.data.metadata import age_at_mid_year
from age_tf.errors import DataError
from age_tf.synthetic import faces, formats

# Row kinds. 'ok' rows are clean; the others are the defects the generator injects.
DEFECT_KINDS = (
    "mislabel",  # label far from the rendered age
    "bad_age",  # label outside 0..100 (dob after the photo, or implausibly old)
    "no_face",  # face_score -inf, image without a face
    "two_faces",  # second_face_score finite, two faces in the image
    "placeholder",  # 1x1 image
    "truncated",  # JPEG cut short
    "grayscale",  # usable: single-channel JPEG
    "png",  # usable: PNG bytes saved as .jpg
    "cmyk",  # usable: CMYK JPEG
    "missing",  # listed in the metadata, no file
)
USABLE_DEFECTS = ("grayscale", "png", "cmyk")
DUPLICATE_VARIANTS = ("exact", "reencode", "resize")
# How the rendered crops frame their face, as a detector sees it: MTCNN's box on rendered
# faces leaves a median 0.77 (x) and 0.54 (y) of its size per side (tools/measure_photos.py);
# a photo's face cropped with this margin is framed as these crops are.
CROP_MARGIN = 0.65


def _share(default: float, help: str):
    """A config field holding a share of rows, in [0, 1]."""
    return field(default, low=0, high=1, help=help)


@dataclasses.dataclass
class SynthConfig:
    """How much and what kind of data to write; rates are fractions of all rows."""

    out_dir: str = field(None, "Where to write imdb.mat, imdb_crop/ and ground_truth.csv.")
    num_images: int = field(2000, low=1, help="Rows in imdb.mat (files written: slightly fewer).")
    seed: int = field(0, "Random seed; the same seed writes the same bytes.")
    images_per_identity: float = field(4.0, low=1, help="Mean photos per person.")
    min_size: int = field(96, low=16, help="Smallest crop side in pixels.")
    max_size: int = field(192, low=16, help="Largest crop side in pixels.")
    duplicate_rate: float = _share(0.05, "Share of rows that copy another row's photo.")
    cross_identity_duplicate_share: float = _share(0.3, "Share of the duplicates filed under another"
                                                       " person.")
    mislabel_rate: float = _share(0.05, "Share of rows whose age label is wrong by 20+ years.")
    bad_age_rate: float = _share(0.01, "Share of rows with an age outside 0-100.")
    no_face_rate: float = _share(0.03, "Share of rows without a face (face_score -inf).")
    two_faces_rate: float = _share(0.03, "Share of rows with a second face.")
    placeholder_rate: float = _share(0.01, "Share of rows whose image is a 1x1 placeholder.")
    truncated_rate: float = _share(0.01, "Share of rows whose JPEG is cut short.")
    grayscale_rate: float = _share(0.02, "Share of rows saved as grayscale JPEG (usable).")
    png_rate: float = _share(0.01, "Share of rows saved as PNG bytes in a .jpg (usable).")
    cmyk_rate: float = _share(0.01, "Share of rows saved as CMYK JPEG (usable).")
    missing_rate: float = _share(0.005, "Share of rows listed without a file.")
    max_roll: float = field(0.0, low=0, high=45, help="Faces turned in-plane by up to this "
                            "many degrees either way (uniform; beyond their own small head "
                            "roll), to test face alignment against the landmarks drawn.")
    workers: int | None = field(None, low=1, help="Rendering processes (default: all cores).")
    format: str = field("imdb_wiki", "Release layout to write: " + ", ".join(
        f"{k} ({v})" for k, v in formats.DESCRIPTIONS.items()) + ".",
                        choices=tuple(formats.DESCRIPTIONS))
    overwrite: bool = field(False, "Replace a dataset already in --out_dir.")

    def rate(self, kind: str) -> float:
        return getattr(self, f"{kind}_rate")

    def validate(self) -> None:
        if self.num_images < 10:
            raise ValueError(f"--num_images must be at least 10, got {self.num_images}")
        if not 16 <= self.min_size <= self.max_size:
            raise ValueError(
                f"need 16 <= --min_size <= --max_size, got {self.min_size}, {self.max_size}"
            )
        total = self.duplicate_rate + sum(self.rate(k) for k in DEFECT_KINDS)
        if any(self.rate(k) < 0 for k in DEFECT_KINDS) or self.duplicate_rate < 0:
            raise ValueError("defect rates must be >= 0")
        if total > 0.6:
            raise ValueError(f"defect and duplicate rates add up to {total:.2f}; keep them <= 0.6")


def sample_ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """IMDB-like ages: most between 20 and 50, a long tail to 100 and a few children."""
    comp = rng.choice(3, size=n, p=[0.82, 0.12, 0.06])
    ages = np.where(
        comp == 0,
        rng.normal(35, 10, n),
        np.where(comp == 1, rng.uniform(50, 100, n), rng.uniform(0, 20, n)),
    )
    return np.clip(np.round(ages), 0, 100).astype(np.int64)


def _matlab_datenum(d: datetime.date) -> int:
    return d.toordinal() + 366


def _photo_year(birth: datetime.date, age: int) -> int:
    """The photo_taken year for which the release's age rule gives `age`."""
    return birth.year + age + (1 if (birth.month, birth.day) > (7, 1) else 0)


def _plan_rows(cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Decides every row's identity, ages, kind and metadata before rendering anything."""
    n_dup = int(round(cfg.num_images * cfg.duplicate_rate))
    n_base = cfg.num_images - n_dup
    # Identities with a geometric number of photos each.
    counts = faces.photo_counts(rng, n_base, cfg.images_per_identity)
    n_ident = len(counts)
    ident_of_row = np.repeat(np.arange(n_ident), counts)
    ages = sample_ages(rng, n_base)
    # Photos of one person span a career: keep ages of one identity within ~15 years of
    # each other by centring them on the identity's first sampled age.
    first = np.r_[0, np.cumsum(counts)[:-1]]
    centre = ages[first][ident_of_row]
    ages = np.clip(np.round(centre + rng.normal(0, 6, n_base)), 0, 100).astype(np.int64)

    births = []
    for i in range(n_ident):
        oldest = ages[ident_of_row == i].max()
        year = int(2015 - oldest - rng.integers(0, 40))
        births.append(datetime.date(year, int(rng.integers(1, 13)), int(rng.integers(1, 29))))

    kinds = np.array(["ok"] * n_base, dtype=object)
    order = rng.permutation(n_base)
    pos = 0
    for kind in DEFECT_KINDS:
        k = int(round(cfg.num_images * cfg.rate(kind)))
        kinds[order[pos : pos + k]] = kind
        pos += k

    rows = []
    for r in range(n_base):
        ident = int(ident_of_row[r])
        birth = births[ident]
        rendered = int(ages[r])
        label = rendered
        kind = kinds[r]
        if kind == "mislabel":
            # At least 20 years off, as when photo_taken or dob is wrong in the release.
            options = [a for a in range(0, 101) if abs(a - rendered) >= 20]
            label = int(rng.choice(options))
        elif kind == "bad_age":
            label = int(rng.choice([-rng.integers(1, 30), 101 + rng.integers(0, 900)]))
        rows.append(
            dict(identity=ident, birth=birth, rendered_age=rendered, label_age=label, kind=kind,
                 photo_taken=_photo_year(birth, label), duplicate_of=-1, dup_variant="")
        )

    # Duplicates copy a clean row's picture; some are filed under another person.
    clean = np.flatnonzero(kinds == "ok")
    originals = rng.choice(clean, size=n_dup, replace=n_dup > len(clean))
    for src in originals:
        row = dict(rows[src])
        row["duplicate_of"] = int(src)
        row["dup_variant"] = DUPLICATE_VARIANTS[rng.integers(len(DUPLICATE_VARIANTS))]
        row["kind"] = "duplicate"
        if rng.random() < cfg.cross_identity_duplicate_share and n_ident > 1:
            other = int(rng.integers(n_ident - 1))
            row["identity"] = other + (other >= row["identity"])
            birth = births[row["identity"]]
            row["birth"] = birth
            # Same photo, so the same year; the label now follows the other person's dob.
            row["label_age"] = age_at_mid_year(birth, row["photo_taken"])
        rows.append(row)
    plan = pd.DataFrame(rows)
    # Shuffle so duplicates are not all at the end of the file.
    perm = rng.permutation(len(plan))
    inverse = np.argsort(perm)
    plan = plan.iloc[perm].reset_index(drop=True)
    plan["duplicate_of"] = [inverse[d] if d >= 0 else -1 for d in plan["duplicate_of"]]
    plan["size"] = rng.integers(cfg.min_size, cfg.max_size + 1, len(plan))
    plan["quality"] = rng.integers(60, 96, len(plan))
    plan["seed"] = rng.integers(0, 2**63 - 1, len(plan))
    plan["ident_seed"] = [int(s) for s in rng.integers(0, 2**63 - 1, n_ident)[plan["identity"]]]
    return plan


def _encode(img: Image.Image, quality: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=int(quality))
    return buf.getvalue()


def _render_row(row: dict) -> tuple[bytes | None, dict | None]:
    """Renders one non-duplicate row: (file bytes or None: no file, the landmarks of its
    face or None: no face drawn)."""
    rng = np.random.default_rng(row["seed"])
    ident = faces.random_identity(np.random.default_rng(row["ident_seed"]))
    kind, size = row["kind"], int(row["size"])
    if kind == "missing":
        return None, None
    if kind == "placeholder":
        return _encode(Image.new("RGB", (1, 1), (255, 255, 255)), 90), None
    landmarks = None
    if kind == "no_face":
        img = faces.render_scene_without_face(rng, size)
    else:
        img, landmarks = faces.render_face(rng, row["rendered_age"], ident, size,
                                           kind == "two_faces", row.get("roll", 0.0))
    if kind == "grayscale":
        return _encode(img.convert("L"), row["quality"]), landmarks
    if kind == "cmyk":
        return _encode(img.convert("CMYK"), row["quality"]), landmarks
    if kind == "png":
        return _encode(img, 0, "PNG"), landmarks
    data = _encode(img, row["quality"])
    if kind == "truncated":
        return data[: len(data) // 2], None
    return data, landmarks


def _render_chunk(rows: list[dict]) -> list[tuple[bytes | None, dict | None]]:
    return [_render_row(r) for r in rows]


def _duplicate_bytes(original: bytes, variant: str, rng: np.random.Generator) -> tuple[bytes, float]:
    """A duplicate's bytes, and its scale against the original (its landmarks move by it)."""
    if variant == "exact":
        return original, 1.0
    img = Image.open(io.BytesIO(original)).convert("RGB")
    scale = 1.0
    if variant == "resize":
        f = rng.choice([rng.uniform(0.6, 0.9), rng.uniform(1.15, 1.5)])
        side = max(16, int(img.width * f))
        scale = side / img.width
        img = img.resize((side,) * 2, Image.Resampling.BICUBIC)
    return _encode(img, int(rng.integers(55, 96))), scale


def _scaled(landmarks: dict | None, scale: float) -> dict | None:
    """Landmarks of an image resized by `scale` (pixel centres: (x + 0.5) * s - 0.5)."""
    if landmarks is None:
        return None
    return {k: ((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5) for k, (x, y) in landmarks.items()}


def _file_name(row: dict, celeb_id: int, rm: int) -> str:
    b = row["birth"]
    return f"{celeb_id % 100:02d}/nm{celeb_id:07d}_rm{rm:09d}_{b.year}-{b.month}-{b.day}_{row['photo_taken']}.jpg"


def _names(rng: np.random.Generator, n: int) -> list[str]:
    syll = ["an", "bel", "cor", "da", "el", "fin", "ga", "hal", "is", "jo", "ka", "lin", "mar",
            "no", "or", "pe", "ra", "sol", "ta", "ul", "ve", "wen", "xi", "yo", "zar"]
    out, seen = [], set()
    while len(out) < n:
        first = "".join(rng.choice(syll, rng.integers(2, 4))).capitalize()
        last = "".join(rng.choice(syll, rng.integers(2, 4))).capitalize()
        name = f"{first} {last}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _cell(values) -> np.ndarray:
    arr = np.empty((1, len(values)), dtype=object)
    for i, v in enumerate(values):
        arr[0, i] = v
    return arr


def write_mat(path: str, plan: pd.DataFrame, full_paths: list[str], names: list[str],
              rng: np.random.Generator) -> list[np.ndarray]:
    """Writes imdb.mat with the release's struct layout and field dtypes.

    Returns:
      Each row's face_location (1 x 4, MATLAB pixel coordinates in the uncropped photo).
    """
    n = len(plan)
    boxes, scores, seconds = [], [], []
    dup_of = plan["duplicate_of"].to_numpy()
    for row in plan.itertuples():
        if row.duplicate_of >= 0:
            # Filled below: the same photo gets the same detector output.
            boxes.append(None), scores.append(None), seconds.append(None)
            continue
        size = row.size
        # face_location is in the uncropped original: the crop is the face plus a 40% margin
        # placed somewhere in a larger photo.
        ox, oy = rng.uniform(0, 400, 2)
        face = size / 1.8
        x1, y1 = ox + (size - face) / 2 + 1, oy + (size - face) / 2 + 1
        if row.kind == "no_face":
            boxes.append(np.array([[1.0, 1.0, 1.0, 1.0]]))
            scores.append(-np.inf)
            seconds.append(np.nan)
            continue
        boxes.append(np.array([[x1, y1, x1 + face, y1 + face]]))
        scores.append(float(np.clip(rng.normal(4.3, 0.9), 0.5, 7.5)))
        seconds.append(float(rng.uniform(0.5, 3.0)) if row.kind == "two_faces" else np.nan)
    for i in np.flatnonzero(dup_of >= 0):
        boxes[i], scores[i], seconds[i] = boxes[dup_of[i]], scores[dup_of[i]], seconds[dup_of[i]]
    gender = np.array([row.gender for row in plan.itertuples()], dtype=np.float64)
    gender[rng.random(n) < 0.03] = np.nan  # The release has unknown genders too.
    row_names = [names[i] for i in plan["identity"]]
    fields = {
        "dob": np.array([[float(_matlab_datenum(b)) for b in plan["birth"]]]),
        # uint16 as in the real release: readers must widen it before subtracting.
        "photo_taken": np.array([plan["photo_taken"].clip(0, 65535).to_numpy()], dtype=np.uint16),
        "full_path": _cell([np.array([p]) for p in full_paths]),
        "gender": gender[None, :],
        "name": _cell([np.array([nm]) if nm else np.zeros((0,), dtype="<U1") for nm in row_names]),
        "face_location": _cell(boxes),
        "face_score": np.array([scores], dtype=np.float64),
        "second_face_score": np.array([seconds], dtype=np.float64),
        "celeb_names": _cell([np.array([nm]) for nm in names]),
        "celeb_id": (plan["identity"].to_numpy(dtype=np.float64) + 1)[None, :],
    }
    struct = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        struct[0, 0][k] = v
    scipy.io.savemat(path, {"imdb": struct}, format="5", oned_as="row")
    return boxes


@dataclasses.dataclass
class Rendered:
    """A synthetic release before it is written in any layout: every row's plan (identity,
    ages, kind), its IMDB-WIKI path, the identities' names and each row's crop bytes (None:
    no file)."""

    plan: pd.DataFrame
    full_paths: list[str]
    names: list[str]
    blobs: list[bytes | None]
    seed: int
    workers: int
    landmarks: list[dict | None]  # each row's face as drawn (faces.LANDMARKS), None: no face


def render(cfg: SynthConfig) -> Rendered:
    """Plans and renders every row (the same seed renders the same bytes in every format)."""
    rng = np.random.default_rng(cfg.seed)
    plan = _plan_rows(cfg, rng)
    n_ident = int(plan["identity"].max()) + 1
    id_rng = np.random.default_rng(cfg.seed + 1)
    people = [faces.random_identity(np.random.default_rng(s)) for s in plan["ident_seed"]]
    plan["gender"] = [p.gender for p in people]
    plan["skin_tone"] = [p.skin_group for p in people]
    names = _names(id_rng, n_ident)
    # A few empty names, as in the release.
    for i in np.flatnonzero(id_rng.random(n_ident) < 0.003):
        names[i] = ""
    rms = id_rng.choice(10**9 - 10**8, size=len(plan), replace=False) + 10**8
    full_paths = [
        _file_name(row, int(row["identity"]) + 1, int(rm))
        for row, rm in zip(plan.to_dict("records"), rms)
    ]

    if cfg.max_roll:  # its own stream: without it every other draw is as before
        plan["roll"] = np.random.default_rng(cfg.seed + 7).uniform(
            -cfg.max_roll, cfg.max_roll, len(plan)).round(2)
    records = plan.to_dict("records")
    to_render = [i for i, r in enumerate(records) if r["kind"] != "duplicate"]
    logging.info("rendering %d images (%d duplicates follow)", len(to_render), len(plan) - len(to_render))
    workers = cfg.workers or os.cpu_count() or 1
    blobs: list[bytes | None] = [None] * len(plan)
    landmarks: list[dict | None] = [None] * len(plan)
    chunks = parallel.chunked(to_render, 64)
    with progress.Bar(len(to_render), "rendering faces") as bar:
        results = parallel.map_in_processes(
            _render_chunk, [[records[i] for i in c] for c in chunks], workers,
            on_done=lambda i: bar.update(len(chunks[i])))
    for c, res in zip(chunks, results):
        for i, (b, marks) in zip(c, res):
            blobs[i], landmarks[i] = b, marks
    dup_rng = np.random.default_rng(cfg.seed + 2)
    for i, r in enumerate(records):
        if r["kind"] == "duplicate":
            blobs[i], scale = _duplicate_bytes(blobs[r["duplicate_of"]], r["dup_variant"],
                                               dup_rng)
            landmarks[i] = _scaled(landmarks[r["duplicate_of"]], scale)
    return Rendered(plan, full_paths, names, blobs, cfg.seed, workers, landmarks)


def write_imdb_wiki(rendered: Rendered, out_dir: str) -> tuple[pd.DataFrame, list]:
    """Writes imdb.mat, imdb_crop/, ground_truth.csv and release.json into out_dir.

    Returns:
      (the ground truth, each row's face_location in its uncropped photo).
    """
    plan, full_paths = rendered.plan, rendered.full_paths
    crop_dir = os.path.join(out_dir, "imdb_crop")
    os.makedirs(out_dir, exist_ok=True)
    fileio.write_files(crop_dir, zip(full_paths, rendered.blobs))
    with fileio.atomic_path(os.path.join(out_dir, "imdb.mat")) as tmp:
        boxes = write_mat(tmp, plan, full_paths, rendered.names,
                          np.random.default_rng(rendered.seed + 3))
    truth = pd.DataFrame(
        {
            "row": np.arange(len(plan)),
            "full_path": full_paths,
            "identity": plan["identity"].to_numpy() + 1,
            "kind": plan["kind"],
            "rendered_age": plan["rendered_age"],
            "label_age": plan["label_age"],
            "duplicate_of": [full_paths[d] if d >= 0 else "" for d in plan["duplicate_of"]],
            "dup_variant": plan["dup_variant"],
            **formats.truth_groups(plan),
            **formats.truth_landmarks(rendered.landmarks),
        }
    )
    truth.to_csv(os.path.join(out_dir, "ground_truth.csv"), index=False)
    formats.write_release_record(out_dir, "IMDB-WIKI", CROP_MARGIN, rendered.seed, len(truth))
    return truth, boxes


def generate(cfg: SynthConfig, out_dir: str | None = None, overwrite: bool | None = None) -> dict:
    """Writes the synthetic dataset in the layout of `cfg.format`.

    Args:
      cfg: format, sizes, rates and seed.
      out_dir: destination (default cfg.out_dir); see formats.LAYOUTS for what each
        format writes there (IMDB-WIKI: imdb.mat, imdb_crop/ and ground_truth.csv).
      overwrite: replace an existing dataset in out_dir (default cfg.overwrite).

    Returns:
      Summary counts per row kind.

    Raises:
      DataError: out_dir already holds a dataset and overwrite is False.
    """
    out_dir = out_dir or cfg.out_dir
    overwrite = cfg.overwrite if overwrite is None else overwrite
    if not out_dir:
        raise ValueError("--out_dir is required")
    cfg.validate()
    existing = [name for name in formats.LAYOUTS[cfg.format]
                if os.path.exists(os.path.join(out_dir, name))]
    if existing and not overwrite:
        raise DataError(
            f"{out_dir}: already holds a dataset ({', '.join(existing)}); pass --overwrite to "
            "replace it or choose another --out_dir"
        )
    rendered = render(cfg)
    truth, boxes = (write_imdb_wiki(rendered, out_dir) if cfg.format in ("imdb_wiki", "imdb_clean")
                    else (None, None))
    if cfg.format != "imdb_wiki":
        truth = formats.WRITERS[cfg.format](rendered, out_dir, boxes)
    summary = {k: int(v) for k, v in truth["kind"].value_counts().items()}
    logging.info("wrote %d rows to %s (%s): %s", len(truth), out_dir, cfg.format, summary)
    return summary


def summary_text(cfg: SynthConfig, counts: dict) -> str:
    """What age-tf-synth prints: where the release is, what it holds, what to run next."""
    out = cfg.out_dir
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    layout = ", ".join(os.path.join(out, p) for p in formats.LAYOUTS[cfg.format])
    if cfg.format == "imdb_wiki":
        where = f"--mat={os.path.join(out, 'imdb.mat')}"
    elif cfg.format == "imdb_clean":
        where = (f"--release_dir={os.path.join(out, 'imdb-clean')} "
                 f"--images_dir={os.path.join(out, 'imdb')}")
    elif cfg.format == "facebase":
        where = f"--database={formats.facebase_database(out)} --split=benchmark"
    else:
        where = f"--release_dir={os.path.join(out, formats.LAYOUTS[cfg.format][0])}"
    nxt = f"age-tf-prepare --format={cfg.format} {where} --out_dir=DATA"
    return (f"wrote {sum(counts.values()):,} rows ({cfg.format}): {kinds}\n"
            f"release: {layout}\nknown truth: {formats.truth_path(cfg.format, out)}\n"
            f"next: {nxt}")


def score_dedup(truth: pd.DataFrame, rejected: pd.DataFrame) -> dict:
    """Scores duplicate removal against the ground truth.

    Only rows that reached the duplicate stage count (a copy of a photo that failed an
    earlier filter cannot be removed as a duplicate).

    Args:
      truth: ground_truth.csv of the synthetic set.
      rejected: rejected.csv written by prepare.

    Returns:
      precision (share of removals that belong to a true duplicate group with another
      surviving member), recall (removals per group, capped at members - 1, over the
      injected duplicates that could be removed), and the counts behind them.
    """
    early = rejected[~rejected["stage"].isin(["duplicates removed"]) &
                     ~rejected["stage"].str.startswith("sample")]["row"]
    reached = ~truth["row"].isin(early)
    # Ground-truth group: the original's path (its own path for an original).
    gt_group = np.where(truth["duplicate_of"].fillna("") != "", truth["duplicate_of"], truth["full_path"])
    members = pd.Series(gt_group[reached.to_numpy()]).value_counts()
    removed_rows = set(rejected.loc[rejected["stage"] == "duplicates removed", "row"])
    removed = truth["row"].isin(removed_rows).to_numpy()
    removed_groups = pd.Series(gt_group[removed]).value_counts()
    true_removals = sum(min(int(n), int(members.get(g, 0)) - 1) for g, n in removed_groups.items())
    removable = int((members - 1).clip(lower=0).sum())
    n_removed = int(removed.sum())
    return {
        "removed": n_removed,
        "true_removals": int(true_removals),
        "injected_removable": removable,
        "precision": true_removals / n_removed if n_removed else 1.0,
        "recall": true_removals / removable if removable else 1.0,
    }
