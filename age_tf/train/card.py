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

from age_tf import __version__, export_format, fileio
from age_tf import config as config_lib
from age_tf.data import align, pipeline, prepared, sources
from age_tf.export_format import ALIGNED, CARD_FORMAT, SYNTHETIC_WARNING
from age_tf.train import heads, models, standin_weights
from age_tf.train.run_dir import RunDir

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
    return {"source": "file", "file": os.path.basename(source), "synthetic": False}


def _data(config: dict) -> dict:
    """The training data as its prepared folder records it (or what is known without it).

    The folder is named by its name and the fingerprint of its manifests, never by its path
    on the trainer's machine: the card ships with every export.
    """
    folder = prepared.PreparedDir(config["data_dir"])
    out = {"name": os.path.basename(os.path.normpath(folder.root)),
           "fingerprint": config.get("data_fingerprint"), "labels": "as given"}
    for record, labels in LABEL_RECORDS.items():
        path = os.path.join(folder.root, record)
        if os.path.exists(path):
            with open(path) as f:
                out["labels"] = labels + (f" ({json.load(f).get('action')})"
                                          if record == "clean.json" else "")
    if not folder.exists():
        out.update(source="unknown (prepared folder gone)", synthetic=None, crop_margin=None)
        return out
    report = folder.report()
    release = report["inputs"].get("release", {})
    inputs = report["inputs"]
    source = release.get("generator") or inputs.get("source") or inputs.get("mat") or ""
    out.update(format=folder.format(),
               source=source if release.get("generator") else os.path.basename(str(source)),
               synthetic=bool(release.get("synthetic", False)),
               crop_margin=release.get("crop_margin", sources.RELEASE_MARGIN),
               rows={k: v["images"] for k, v in report["splits"].items()})
    return out


def _preprocessing(config: dict, data: dict) -> dict:
    p, m = config["pipeline"], config["model"]
    return {
        "image_size": m["image_size"],
        "input": "RGB pixels in [0, 255] (grayscale and CMYK converted to RGB), resized "
                 "bilinear to image_size x image_size",
        # Exactly, for a client that decodes and resizes itself (serve_bytes does this).
        "decode": f"JPEG: tf.io.decode_jpeg(channels=3, dct_method='{pipeline.JPEG_IDCT}') "
                  "(libjpeg-turbo's accurate integer IDCT, fancy upsampling: the pixels Pillow "
                  "decodes); PNG and others: tf.io.decode_image(channels=3)",
        "resize": "tf.image.resize(method='bilinear', antialias=False, half-pixel centers) to "
                  "image_size x image_size, then +0.5 and saturate_cast to uint8; with "
                  "crop_faces, tf.image.crop_and_resize of the face box widened by crop_margin",
        "crop_faces": p["crop_faces"],
        # How the face is framed, for serving to frame detected faces the same way.
        "framing": ALIGNED if p.get("align") else "box with margin",
        **({"alignment": {"method": "the unified benchmark's rotated square from the eyes "
                                    "and mouth centre (data/align.py)",
                          "eye_to_eye": align.EYE_TO_EYE, "eye_to_mouth": align.EYE_TO_MOUTH,
                          "mouth_shift": align.MOUTH_SHIFT, "outside": "black"}}
           if p.get("align") else {}),
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
            "srocc_ci95", "cs5", "intervals", "by_decade", "by_group", "split")
    out = {k: m[k] for k in keys if k in m}
    if "decisions" in m:  # the rates met at each threshold (not the figure's sweep)
        out["decisions"] = {k: m["decisions"][k] for k in ("error", "thresholds")}
    return out


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
                  "head_units": m["head_units"], "head": m.get("head", "regression"),
                  "loss": heads.loss_text(m.get("head", "regression"), config_lib.from_dict(
                      models.ModelConfig, m, f"{run.config}: model").loss_weights()),
                  "output": "age in years"},
        "weights": weights,
        "data": data,
        "synthetic": bool(weights["synthetic"] or data.get("synthetic")),
        "preprocessing": _preprocessing(config, data),
        "intervals": calibration,
        "decisions": run.read_decisions(),
        "test": _test(run),
        "versions": _versions(),
        "config_hash": config_hash(run),
        "run": os.path.basename(os.path.normpath(run.root)),  # not a path of the trainer's
    }
    if os.path.exists(os.path.join(run.export, "saved_model.pb")):
        card["model_sha256"] = export_format.saved_model_sha256(run.export)
    if card["synthetic"]:
        card["warning"] = SYNTHETIC_WARNING
    return card


def write(card: dict, path: str) -> None:
    # An export written before cards has no assets/ folder.
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fileio.atomic_write_text(path, json.dumps(card, indent=2, default=str))
