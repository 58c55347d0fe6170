"""The model card: what a served model is, in one JSON file that travels with every export.

Built from the run's own records (config.json, the prepared data's report, the interval
calibration, the test evaluation once there is one), so it cannot disagree with them; written
into `export/assets/model_card.json` by the code that exports, beside a .tflite file as
`<file>.json`, and read back by age_tf.serve (crop margin, image size, intervals, warnings).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform

import keras
import numpy
import tensorflow

from age_tf import __version__, fileio
from age_tf.data import pipeline
from age_tf.standin import weights as standin_weights
from age_tf.train.run_dir import RunDir

CARD_FORMAT = 1
ASSET_NAME = "model_card.json"  # in <export>/assets/
SYNTHETIC_WARNING = ("trained on synthetic faces: ages of real photos are not meaningful")
# Labels of a prepared folder, by the record its maker left in it (clean.py).
LABEL_RECORDS = {"clean.json": "cleaned", "oracle.json": "oracle (rendered ages)"}


def _versions() -> dict:
    return {"age_tf": __version__, "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _weights(model_cfg: dict) -> dict:
    source = model_cfg["weights"]
    if source == "standin":
        corpora = standin_weights.training_corpora(standin_weights.card(model_cfg["backbone"]))
        return {"source": "standin", "synthetic": True,
                "note": "the shipped stand-in, pretrained on synthetic faces of other people",
                "corpora": corpora}
    if source in ("imagenet", "none"):
        return {"source": source, "synthetic": False}
    return {"source": "file", "path": os.path.abspath(source), "synthetic": False}


def _data(config: dict) -> dict:
    """The training data as its prepared folder records it (or what is known without it)."""
    data_dir = config["data_dir"]
    out = {"data_dir": os.path.abspath(data_dir), "labels": "as given"}
    for record, labels in LABEL_RECORDS.items():
        path = os.path.join(data_dir, record)
        if os.path.exists(path):
            with open(path) as f:
                out["labels"] = labels + (f" ({json.load(f).get('action')})"
                                          if record == "clean.json" else "")
    report_path = os.path.join(data_dir, "report.json")
    if not os.path.exists(report_path):
        out.update(source="unknown (prepared folder gone)", synthetic=None, crop_margin=None)
        return out
    with open(report_path) as f:
        report = json.load(f)
    release = report["inputs"].get("release", {})
    inputs = report["inputs"]
    out.update(source=release.get("generator") or inputs.get("source") or inputs["mat"],
               synthetic=bool(release.get("synthetic", False)),
               crop_margin=release.get("crop_margin", pipeline.RELEASE_MARGIN),
               rows={k: v["images"] for k, v in report["splits"].items()})
    return out


def _preprocessing(config: dict, data: dict) -> dict:
    p, m = config["pipeline"], config["model"]
    return {
        "image_size": m["image_size"],
        "input": "RGB pixels in [0, 255] (grayscale and CMYK converted to RGB), resized "
                 "bilinear to image_size x image_size",
        "crop_faces": p["crop_faces"],
        # The framing the network saw: its own crop of the release's box, or the release's.
        "crop_margin": p["face_margin"] if p["crop_faces"] else data.get("crop_margin"),
        "normalization": "inside the model (its first layers); do not normalize before",
    }


def _test(run: RunDir) -> dict | None:
    if not os.path.exists(run.eval_metrics):
        return None
    with open(run.eval_metrics) as f:
        m = json.load(f)
    keys = ("images", "identities", "mae_years", "mae_years_ci95", "plcc", "plcc_ci95", "srocc",
            "srocc_ci95", "cs5", "intervals", "by_decade", "split", "data_dir")
    return {k: m[k] for k in keys if k in m}


def config_hash(run: RunDir) -> str:
    with open(run.config, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def build(run: RunDir, calibration: dict | None) -> dict:
    """The card of a run, from its records (see the module docstring)."""
    config = run.read_config()
    m = config["model"]
    data = _data(config)
    weights = _weights(m)
    card = {
        "format": CARD_FORMAT,
        "model": {"backbone": m["backbone"], "tune": m["tune"],
                  "freeze_batchnorm": m.get("freeze_batchnorm", False),
                  "head_units": m["head_units"], "output": "age in years"},
        "weights": weights,
        "data": data,
        "synthetic": bool(weights["synthetic"] or data.get("synthetic")),
        "preprocessing": _preprocessing(config, data),
        "intervals": calibration,
        "test": _test(run),
        "versions": _versions(),
        "config_hash": config_hash(run),
        "run": os.path.abspath(run.root),
    }
    if card["synthetic"]:
        card["warning"] = SYNTHETIC_WARNING
    return card


def write(card: dict, path: str) -> None:
    # An export written before cards has no assets/ folder.
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fileio.atomic_write_text(path, json.dumps(card, indent=2, default=str))


MAX_CARD_BYTES = 1 << 20  # a card is a few KB; anything larger is not one


def read(path: str) -> dict | None:
    """A card file, or None when there is none (an export older than cards).

    Raises:
      ValueError: the file is not a card (names it and the fix).
    """
    if not os.path.exists(path):
        return None
    fix = "re-export the run (age-tf-export --model_dir=RUN) or remove the file"
    if os.path.getsize(path) > MAX_CARD_BYTES:
        raise ValueError(f"{path}: {os.path.getsize(path):,} bytes is not a model card; {fix}")
    try:
        with open(path) as f:
            card = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable model card ({e}); {fix}") from e
    if not isinstance(card, dict) or not isinstance(card.get("preprocessing"), dict):
        raise ValueError(f"{path}: not a model card (no preprocessing section); {fix}")
    return card


def summary(card: dict) -> dict:
    """What a prediction's JSON output carries of the card."""
    test = card.get("test") or {}
    return {"backbone": card["model"]["backbone"], "tune": card["model"]["tune"],
            "weights": card["weights"]["source"], "synthetic": card["synthetic"],
            "labels": card["data"].get("labels"), "image_size": card["preprocessing"]["image_size"],
            "crop_margin": card["preprocessing"]["crop_margin"],
            "interval_coverage": (card.get("intervals") or {}).get("coverage"),
            "test_mae_years": test.get("mae_years"), "test_plcc": test.get("plcc"),
            **({"warning": card["warning"]} if "warning" in card else {})}
