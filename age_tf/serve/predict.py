"""Age of photos through a served model, with its interval (what age-tf-predict serves)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf

from age_tf.config import field
from age_tf.data import pipeline
from age_tf.serve import photos
from age_tf.serve.served_model import AgeModel
from age_tf.train import card as card_module


@dataclasses.dataclass
class PredictConfig:
    """How `age-tf-predict` runs (the photos are its positional arguments)."""

    model: str = field(None, "An export/ folder, a run directory holding one, or a .tflite "
                       "file written by age-tf-export.")
    faces: str = field("detect", "detect: find every face in each photo (MTCNN), crop it as "
                       "the model's training faces were framed, predict each; given: each "
                       "file is already a face crop.", choices=("detect", "given"))
    output: str = field("text", "Human-readable lines, CSV or JSON (JSON adds the model "
                        "card's summary).", choices=("text", "csv", "json"))
    batch_size: int = field(32, "Faces per call of the model.")
    min_face_size: int = field(20, "Smallest face the detector looks for (pixels).")
    min_confidence: float = field(0.9, "Faces the detector is less sure of are left out.")
    face_margin: float | None = field(None, "Crop margin around a detected face, as a share of "
                                      "its size per side. Default: the margin the model's card "
                                      "says its training faces had (0.4 without a card).")
    annotate: str | None = field(None, "Folder for copies of the photos with boxes and ages "
                                 "drawn (detect mode).")


def run(cfg: PredictConfig, paths: list[str]) -> tuple[str, str, int]:
    """Predicts the photos as cfg says; returns (stdout text, stderr text, exit code).

    A file that cannot be read is an error line (exit code 1) and the others still run; a
    photo with no face is reported, not an error. What the user must know about the model
    (trained on synthetic faces; no card) comes first on stderr, once.
    """
    model = AgeModel(cfg.model)
    notes = "".join(line + "\n" for line in model.notes())
    if cfg.faces == "given":
        results = predict_files(model, paths, cfg.batch_size)
        out, err = format_results(results, cfg.output, model)
        return out, notes + err, 1 if any(r["error"] for r in results) else 0
    detector = photos.FaceDetector(cfg.min_face_size, cfg.min_confidence)
    images, errors = {}, {}
    for path in paths:
        try:
            images[path] = photos.read_photo(path)
        except FileNotFoundError:
            errors[path] = "file not found"
        except (OSError, ValueError) as e:
            errors[path] = str(e)
    faces = photos.estimate_many(list(images.items()), model, detector, cfg.face_margin,
                                 cfg.batch_size)
    if cfg.annotate:
        os.makedirs(cfg.annotate, exist_ok=True)
        for path, image in images.items():
            photos.annotate(image, [f for f in faces if f.file == path],
                            os.path.join(cfg.annotate, os.path.basename(path)))
    out, err = format_faces(paths, faces, errors, cfg.output, model)
    return out, notes + err, 1 if errors else 0


FACE_COLUMNS = ["file", "face", "x1", "y1", "x2", "y2", "confidence", "age", "age_low",
                "age_high", "note"]


def _round(value, digits=3):
    return None if value is None else round(value, digits)


def _interval_text(age: float, low: float | None, high: float | None, coverage) -> str:
    text = f"{age:.1f} years"
    if low is not None:
        text += f" ({coverage:.0%} interval {low:.1f}-{high:.1f})" if coverage else \
            f" (interval {low:.1f}-{high:.1f})"
    return text


def _model_summary(model: AgeModel) -> dict:
    return card_module.summary(model.card) if model.card else {"card": None, "path": model.path}


def format_faces(paths: list[str], faces, errors: dict[str, str], output: str,
                 model: AgeModel) -> tuple[str, str]:
    """(stdout, stderr) for detect mode: one row per face; a photo without faces gets one
    row saying so; unreadable files go to stderr (and to the row's note in CSV/JSON)."""
    rows = []
    for path in paths:
        mine = [f for f in faces if f.file == path]
        for f in mine:
            rows.append({"file": path, "face": f.index, "x1": round(f.box[0], 1),
                         "y1": round(f.box[1], 1), "x2": round(f.box[2], 1),
                         "y2": round(f.box[3], 1), "confidence": round(f.confidence, 4),
                         "age": round(f.age, 3), "age_low": _round(f.age_low),
                         "age_high": _round(f.age_high), "note": "",
                         "landmarks": {k: [round(v[0], 1), round(v[1], 1)] for k, v in f.landmarks.items()}})
        if not mine:
            note = f"error: {errors[path]}" if path in errors else "no face found"
            rows.append({"file": path, "face": None, "x1": None, "y1": None, "x2": None,
                         "y2": None, "confidence": None, "age": None, "age_low": None,
                         "age_high": None, "note": note, "landmarks": {}})
    err = "".join(f"{p}: error: {e}\n" for p, e in errors.items())
    if output == "json":
        return json.dumps({"model": _model_summary(model), "faces": rows}, indent=2) + "\n", err
    if output == "csv":
        return _csv(rows, FACE_COLUMNS), err
    lines = []
    for r in rows:
        if r["face"] is None:
            if not r["note"].startswith("error"):
                lines.append(f"{r['file']}: {r['note']}")
            continue
        lines.append(f"{r['file']} face {r['face']} at ({r['x1']:.0f}, {r['y1']:.0f}, "
                     f"{r['x2']:.0f}, {r['y2']:.0f}), confidence {r['confidence']:.2f}: "
                     + _interval_text(r["age"], r["age_low"], r["age_high"], model.coverage))
    return "".join(line + "\n" for line in lines), err


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def predict_files(model: AgeModel, paths: list[str], batch_size: int = 32) -> list[dict]:
    """Predicts every readable face crop, decoded and resized as the input pipeline does; a
    bad file gets an error entry, the others still run."""
    results, good = [], []
    for path in paths:
        entry = {"path": path, "age": None, "age_low": None, "age_high": None, "error": ""}
        results.append(entry)
        try:
            with open(path, "rb") as f:
                data = f.read()
            image = pipeline.resize(pipeline.decode(tf.constant(data)), model.image_size)
        except FileNotFoundError:
            entry["error"] = "file not found"
            continue
        except (OSError, tf.errors.InvalidArgumentError) as e:
            entry["error"] = ("not a JPEG or PNG image" if isinstance(e, tf.errors.InvalidArgumentError)
                              else str(e))
            continue
        good.append((entry, image.numpy()))
    if good:
        out = model(np.stack([image for _, image in good]).astype(np.float32), batch_size)
        for i, (entry, _) in enumerate(good):
            for key in ("age", "age_low", "age_high"):
                if key in out:
                    entry[key] = float(out[key][i])
    return results


def format_results(results: list[dict], output: str, model: AgeModel) -> tuple[str, str]:
    """(stdout text, stderr text) of --faces=given results as `output`."""
    err = "".join(f"{r['path']}: error: {r['error']}\n" for r in results if r["error"])
    if output == "csv":
        rows = [{**r, **{k: "" if r[k] is None else f"{r[k]:.3f}" for k in ("age", "age_low", "age_high")}}
                for r in results]
        return _csv(rows, ["path", "age", "age_low", "age_high", "error"]), err
    if output == "json":
        return json.dumps({"model": _model_summary(model), "results": results}, indent=2) + "\n", err
    out = "".join(f"{r['path']}: " + _interval_text(r["age"], r["age_low"], r["age_high"],
                                                     model.coverage) + "\n"
                  for r in results if not r["error"])
    return out, err
