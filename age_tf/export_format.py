"""What an export is, for the code that writes it (train/) and the code that serves it
(serve/): the signature names, where the model card lives, and how a card is read.

Below both, so that serving never imports training code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

IMAGES_SIGNATURE = "serving_default"  # float images [N, S, S, 3] in [0, 255]
BYTES_SIGNATURE = "serve_bytes"  # encoded JPEG/PNG bytes [N]
EXPORT_FOLDER = "export"  # a run's SavedModel, inside the run folder

CARD_FORMAT = 1
CARD_ASSET = "model_card.json"  # in <export>/assets/
FILE_CARD_SUFFIX = ".json"  # <file>.tflite.json / <file>.onnx.json beside a one-file model
MAX_CARD_BYTES = 1 << 20  # a card is a few KB; anything larger is not one
ALIGNED = "aligned"  # the card's preprocessing.framing of a model trained on aligned faces
SYNTHETIC_WARNING = "trained on synthetic faces: ages of real photos are not meaningful"


def card_path(model_path: str) -> str:
    """Where the card of a SavedModel folder, or of a one-file model (.tflite, .onnx), is."""
    if model_path.endswith((".tflite", ".onnx")):
        return model_path + FILE_CARD_SUFFIX
    return os.path.join(model_path, "assets", CARD_ASSET)


def find_export(path: str) -> str:
    """The SavedModel folder of `path`: an export folder, or a run folder holding one.

    Raises:
      FileNotFoundError: no SavedModel there (says what to pass instead).
    """
    run_export = os.path.join(path, EXPORT_FOLDER)
    if os.path.isdir(run_export):
        path = run_export
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{path}: no SavedModel here; pass --model=<run>/export "
                                "(a finished age-tf-train run's export folder) or the run folder")
    return path


CARD_FIX = "re-export the run (age-tf-export --model_dir=RUN) or remove the file"


def read_card(path: str) -> dict | None:
    """A card file, checked (check_card), or None when there is none (an export older than
    cards).

    Raises:
      ValueError: the file is not a card, or a field is missing or out of range (names the
        file and the field, and the fix).
    """
    if not os.path.exists(path):
        return None
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file, so not a model card; {CARD_FIX}")
    if os.path.getsize(path) > MAX_CARD_BYTES:
        raise ValueError(f"{path}: {os.path.getsize(path):,} bytes is not a model card; "
                         f"{CARD_FIX}")
    try:
        with open(path, encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable model card ({e}); {CARD_FIX}") from e
    check_card(card, path)
    return card


def _field(card: dict, dotted: str):
    value = card
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


_MISSING = object()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _increasing_numbers(v) -> bool:
    return (isinstance(v, list) and all(_number(x) for x in v)
            and all(a < b for a, b in zip(v, v[1:])))


# What serving reads from a card, and what each must be (None: may be null).
_CARD_FIELDS = (
    ("model", lambda v: isinstance(v, dict), "an object"),
    ("model.backbone", lambda v: isinstance(v, str), "a name"),
    ("model.tune", lambda v: isinstance(v, str), "a name"),
    ("weights.source", lambda v: isinstance(v, str), "a name"),
    ("data", lambda v: isinstance(v, dict), "an object"),
    ("synthetic", lambda v: isinstance(v, bool), "true or false"),
    ("preprocessing", lambda v: isinstance(v, dict), "an object"),
    ("preprocessing.image_size", lambda v: isinstance(v, int) and not isinstance(v, bool)
     and 8 <= v <= 4096, "a whole number of pixels in [8, 4096]"),
    ("preprocessing.crop_margin", lambda v: v is None or (_number(v) and 0 <= v <= 2),
     "null or a number in [0, 2] (a share of the face box per side)"),
    ("intervals", lambda v: v is None or isinstance(v, dict), "null or an object"),
)
_INTERVAL_FIELDS = (
    ("intervals.coverage", lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    ("intervals.edges", _increasing_numbers, "increasing numbers (years)"),
    ("intervals.half_widths", lambda v: isinstance(v, list) and all(_number(x) and x >= 0
                                                                    for x in v),
     "numbers >= 0 (years)"),
)
# A width per face (train/intervals.py's "normalized"): a factor times a learned scale.
_NORMALIZED_FIELDS = (
    ("intervals.coverage", lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    ("intervals.quantile", lambda v: _number(v) and v >= 0, "a number >= 0"),
    ("intervals.scale_weights", lambda v: isinstance(v, list) and len(v) > 2
     and all(_number(x) for x in v), "numbers (one per feature, then two)"),
    ("intervals.scale_bias", _number, "a number"),
)


def check_card(card, path: str) -> None:
    """Checks what serving reads from a card: types, ranges, required sections.

    Raises:
      ValueError: naming the card, the field, its value and what it must be.
    """
    if not isinstance(card, dict):
        raise ValueError(f"{path}: not a model card (not a JSON object); {CARD_FIX}")
    calibration = card.get("intervals")
    normalized = isinstance(calibration, dict) and calibration.get("method") == "normalized"
    fields = _CARD_FIELDS + ((_NORMALIZED_FIELDS if normalized else _INTERVAL_FIELDS)
                             if isinstance(calibration, dict) else ())
    for name, ok, what in fields:
        value = _field(card, name)
        if value is _MISSING:
            raise ValueError(f"{path}: not a model card: no field '{name}'; {CARD_FIX}")
        if not ok(value):
            raise ValueError(f"{path}: field '{name}' is {json.dumps(value)[:80]}, not {what}; "
                             f"{CARD_FIX}")
    span = _field(card, "intervals.age_range")
    if span is not _MISSING and not (isinstance(span, list) and len(span) == 2
                                     and all(_number(v) for v in span) and span[0] <= span[1]):
        raise ValueError(f"{path}: field 'intervals.age_range' is {json.dumps(span)[:80]}, not "
                         f"[lowest, highest] training age; {CARD_FIX}")
    held = _field(card, "intervals.guarantee")
    if held is not _MISSING and not (_number(held) and 0 < held < 1):
        raise ValueError(f"{path}: field 'intervals.guarantee' is {json.dumps(held)[:80]}, not "
                         f"a number in (0, 1); {CARD_FIX}")
    if isinstance(calibration, dict) and not normalized:
        edges, widths = card["intervals"]["edges"], card["intervals"]["half_widths"]
        if len(widths) != len(edges) + 1:
            raise ValueError(f"{path}: field 'intervals.half_widths' has {len(widths)} values "
                             f"for {len(edges)} edges (needs one more); {CARD_FIX}")
    check_decisions(card.get("decisions"), path)
    for name in ("model_sha256", "file_sha256"):
        value = card.get(name)
        if value is not None and not (isinstance(value, str) and len(value) == 64
                                      and all(c in "0123456789abcdef" for c in value)):
            raise ValueError(f"{path}: field '{name}' is not a SHA-256 digest; {CARD_FIX}")


def check_decisions(sample, path: str) -> None:
    """The card's decision calibration (decisions.calibration_sample), if any: as many
    validation ages as predictions, all numbers.

    Raises:
      ValueError: naming the card and what is wrong.
    """
    if sample is None:
        return
    ok = (isinstance(sample, dict) and isinstance(sample.get("ages"), list)
          and isinstance(sample.get("predicted"), list)
          and len(sample["ages"]) == len(sample["predicted"]) > 0
          and all(_number(v) for v in sample["ages"] + sample["predicted"]))
    if not ok:
        raise ValueError(f"{path}: field 'decisions' is not validation ages and predictions of "
                         f"equal, non-zero length; {CARD_FIX}")


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def saved_model_sha256(export_dir: str) -> str:
    """One SHA-256 over a SavedModel's files (names and bytes), its assets/ left out: the
    card lives there and records this digest."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(export_dir):
        dirs[:] = sorted(d for d in dirs if not (root == export_dir and d.startswith("assets")))
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, export_dir).encode())
            h.update(bytes.fromhex(file_sha256(path)))
    return h.hexdigest()


def check_digest(card: dict | None, field: str, actual: str, path: str) -> None:
    """Refuses a model whose bytes are not the ones its card describes.

    Raises:
      ValueError: naming the model, both digests and the fix.
    """
    want = (card or {}).get(field)
    if want is not None and want != actual:
        raise ValueError(f"{path}: its SHA-256 ({actual[:16]}...) is not the one its card "
                         f"records ({want[:16]}...): the model was damaged or replaced after "
                         "export; export the run again (age-tf-export)")


def card_summary(card: dict) -> dict:
    """What a prediction's JSON output carries of the card."""
    test = card.get("test") or {}
    return {"backbone": card["model"]["backbone"], "tune": card["model"]["tune"],
            "head": card["model"].get("head", "regression"),
            "weights": card["weights"]["source"], "synthetic": card["synthetic"],
            "labels": card["data"].get("labels"), "image_size": card["preprocessing"]["image_size"],
            "crop_margin": card["preprocessing"]["crop_margin"],
            "interval_coverage": (card.get("intervals") or {}).get("coverage"),
            "test_mae_years": test.get("mae_years"), "test_plcc": test.get("plcc"),
            **({"warning": card["warning"]} if "warning" in card else {})}
