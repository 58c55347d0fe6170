"""Age of photos through an exported SavedModel (what age-tf-predict serves)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

import tensorflow as tf

from age_tf.config import field
from age_tf.data import pipeline
from age_tf.serve import photos
from age_tf.train import export


@dataclasses.dataclass
class PredictConfig:
    """How `age-tf-predict` runs (the photos are its positional arguments)."""

    model: str = field(None, "An export/ folder, or a run directory holding one.")
    faces: str = field("detect", "detect: find every face in each photo (MTCNN), crop it as "
                       "the release crops were made, predict each; given: each file is "
                       "already a face crop.", choices=("detect", "given"))
    output: str = field("text", "Human-readable lines, CSV or JSON.",
                        choices=("text", "csv", "json"))
    batch_size: int = field(32, "Faces per call of the model.")
    min_face_size: int = field(20, "Smallest face the detector looks for (pixels).")
    min_confidence: float = field(0.9, "Faces the detector is less sure of are left out.")
    face_margin: float = field(pipeline.RELEASE_MARGIN, "Crop margin around a detected face, "
                               "as a share of its size per side (the release crops': 0.4).")
    annotate: str | None = field(None, "Folder for copies of the photos with boxes and ages "
                                 "drawn (detect mode).")


def run(cfg: PredictConfig, paths: list[str]) -> tuple[str, str, int]:
    """Predicts the photos as cfg says; returns (stdout text, stderr text, exit code).

    A file that cannot be read is an error line (exit code 1) and the others still run; a
    photo with no face is reported, not an error.
    """
    if cfg.faces == "given":
        results = predict_files(cfg.model, paths, cfg.batch_size)
        out, err = format_results(results, cfg.output)
        return out, err, 1 if any(r["error"] for r in results) else 0
    model = photos.AgeModel(cfg.model)
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
    out, err = format_faces(paths, faces, errors, cfg.output)
    return out, err, 1 if errors else 0


FACE_COLUMNS = ["file", "face", "x1", "y1", "x2", "y2", "confidence", "age", "note"]


def format_faces(paths: list[str], faces, errors: dict[str, str], output: str) -> tuple[str, str]:
    """(stdout, stderr) for detect mode: one row per face; a photo without faces gets one
    row saying so; unreadable files go to stderr (and to the row's note in CSV/JSON)."""
    rows = []
    for path in paths:
        mine = [f for f in faces if f.file == path]
        for f in mine:
            rows.append({"file": path, "face": f.index, "x1": round(f.box[0], 1),
                         "y1": round(f.box[1], 1), "x2": round(f.box[2], 1),
                         "y2": round(f.box[3], 1), "confidence": round(f.confidence, 4),
                         "age": round(f.age, 3), "note": "",
                         "landmarks": {k: [round(v[0], 1), round(v[1], 1)] for k, v in f.landmarks.items()}})
        if not mine:
            note = f"error: {errors[path]}" if path in errors else "no face found"
            rows.append({"file": path, "face": None, "x1": None, "y1": None, "x2": None,
                         "y2": None, "confidence": None, "age": None, "note": note, "landmarks": {}})
    err = "".join(f"{p}: error: {e}\n" for p, e in errors.items())
    if output == "json":
        return json.dumps(rows, indent=2) + "\n", err
    if output == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FACE_COLUMNS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue(), err
    lines = []
    for r in rows:
        if r["face"] is None:
            if not r["note"].startswith("error"):
                lines.append(f"{r['file']}: {r['note']}")
            continue
        lines.append(f"{r['file']} face {r['face']} at ({r['x1']:.0f}, {r['y1']:.0f}, "
                     f"{r['x2']:.0f}, {r['y2']:.0f}), confidence {r['confidence']:.2f}: "
                     f"{r['age']:.1f} years")
    return "".join(line + "\n" for line in lines), err


def predict_files(model_path: str, paths: list[str], batch_size: int = 32) -> list[dict]:
    """Predicts every readable image; a bad file gets an error entry, the others still run."""
    serve = tf.saved_model.load(export.find_export(model_path)).signatures[export.BYTES_SIGNATURE]
    results, good = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
            pipeline.decode(tf.constant(data))  # reject non-images before batching
        except FileNotFoundError:
            results.append({"path": path, "age": None, "error": "file not found"})
            continue
        except (OSError, tf.errors.InvalidArgumentError) as e:
            msg = "not a JPEG or PNG image" if isinstance(e, tf.errors.InvalidArgumentError) else str(e)
            results.append({"path": path, "age": None, "error": msg})
            continue
        results.append({"path": path, "age": None, "error": ""})
        good.append((len(results) - 1, data))
    for i in range(0, len(good), batch_size):
        chunk = good[i:i + batch_size]
        ages = serve(image_bytes=tf.constant([d for _, d in chunk]))["age"].numpy()
        for (j, _), age in zip(chunk, ages):
            results[j]["age"] = float(age)
    return results


def format_results(results: list[dict], output: str) -> tuple[str, str]:
    """(stdout text, stderr text) of the results as `output` ('text' or 'csv')."""
    if output == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["path", "age", "error"], lineterminator="\n")
        writer.writeheader()
        for r in results:
            writer.writerow({**r, "age": "" if r["age"] is None else f"{r['age']:.3f}"})
        return buf.getvalue(), ""
    out = "".join(f"{r['path']}: {r['age']:.1f} years\n" for r in results if not r["error"])
    err = "".join(f"{r['path']}: error: {r['error']}\n" for r in results if r["error"])
    return out, err
