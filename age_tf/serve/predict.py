"""Age of photos through a served model, with its interval (what age-tf-predict serves)."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import tensorflow as tf

from age_tf import decisions, export_format, progress
from age_tf.data import pipeline
from age_tf.serve import photos
from age_tf.serve.serve_config import PredictConfig  # noqa: F401  (its flags)
from age_tf.serve.served_model import AgeModel

# --faces=given trusts the files: said once, and the shapes no face crop has are flagged.
GIVEN_NOTE = ("note: --faces=given predicts every file as one face crop; it does not check "
              "that a file shows a face (use the default --faces=detect for photos)")
MIN_CROP_SIDE = 24  # px: smaller than any face crop the models were trained on
MAX_CROP_ASPECT = 2.0  # a face box plus margin is about square


def run(cfg: PredictConfig, paths: list[str], out=None, err=None) -> tuple[str, str, int]:
    """Predicts the photos as cfg says; returns (stdout text, stderr text, exit code).

    Photos are read, searched and answered one at a time: memory holds one photo and one
    batch of its face crops, whatever the number of photos or faces. With `out` / `err`
    (functions taking text) each photo's lines are written as soon as it is done (a JSON
    document at the end) and the texts returned are empty.

    A file that cannot be read is an error line (exit code 1) and the others still run; a
    photo with no face is reported, not an error. What the user must know about the model
    (trained on synthetic faces; no card) comes first on stderr, once.
    """
    kept_out, kept_err = [], []
    out, err = out or kept_out.append, err or kept_err.append
    cfg.validate()
    model = AgeModel(cfg.model)
    cuts = model.decision_cuts(decisions.parse_thresholds(cfg.thresholds), cfg.decision_error,
                               cfg.decision_band) if cfg.thresholds else []
    err("".join(line + "\n" for line in model.notes())
        + "".join(f"decisions at {c.threshold:g}: {c.text()}\n" for c in cuts))
    if cfg.faces == "given":
        results = predict_files(model, paths, cfg.batch_size, cfg.max_megapixels)
        for r in results:
            if r["age"] is not None:
                r["decisions"] = face_decisions(r["age"], cuts)
        text, errors = format_results(results, cfg.output, model, cuts)
        err(GIVEN_NOTE + "\n" + errors)
        out(text)
        return "".join(kept_out), "".join(kept_err), 1 if any(r["error"] for r in results) else 0
    code = _detect(cfg, paths, model, out, err, cuts)
    return "".join(kept_out), "".join(kept_err), code


def _detect(cfg: PredictConfig, paths: list[str], model: AgeModel, out, err,
            cuts: list[decisions.Cut]) -> int:
    """Detect mode, photo by photo (see run); returns the exit code."""
    columns = FACE_COLUMNS + [decision_column(c) for c in cuts]
    detector = photos.FaceDetector(cfg.min_face_size, cfg.min_confidence, cfg.detect_side)
    targets = annotation_paths(paths, cfg.annotate) if cfg.annotate else {}
    if cfg.annotate:
        os.makedirs(cfg.annotate, exist_ok=True)
    if cfg.output == "csv":
        out(_csv([], columns))
    every_row, code = [], 0
    with progress.Bar(len(paths), "finding faces", unit="photos") as bar:
        for path in paths:
            faces, error = _photo_faces(cfg, path, model, detector, targets.get(path))
            rows = face_rows(path, faces, error, cuts)
            if error:
                err(f"{path}: error: {error}\n")
                code = 1
            if cfg.output == "json":
                every_row += rows
            elif cfg.output == "csv":
                out(_csv(rows, columns).split("\n", 1)[1])
            else:
                out("".join(line + "\n" for line in row_lines(rows, model)))
            bar.update()
    if cfg.output == "json":
        out(json.dumps({"model": _model_summary(model, cuts), "faces": every_row}, indent=2)
            + "\n")
    return code


def _photo_faces(cfg: PredictConfig, path: str, model: AgeModel, detector,
                 annotated: str | None) -> tuple[list, str | None]:
    """(faces with ages, error or None) of one photo; its annotated copy written if asked."""
    try:
        image = photos.read_photo(path, cfg.max_megapixels)
    except FileNotFoundError:
        return [], "file not found"
    except (OSError, ValueError) as e:
        return [], str(e)
    faces = photos.estimate_photo(path, image, model, detector, cfg.face_margin, cfg.batch_size)
    if annotated:
        try:
            photos.annotate(image, faces, annotated)
        except (OSError, ValueError) as e:
            return faces, f"annotated copy not written to {annotated}: {e}"
    return faces, None


def annotation_paths(paths: list[str], folder: str) -> dict[str, str]:
    """Where each photo's annotated copy goes: its name in `folder`, unless that is one of
    the photos given or another copy's name (then name-2, name-3, ..., skipping files that
    exist). A name without a JPEG/PNG extension gets .jpg (the copy is a JPEG)."""
    inputs = {os.path.realpath(p) for p in paths}
    taken: set[str] = set()

    def free(candidate: str, plain: bool) -> bool:
        real = os.path.realpath(candidate)
        return real not in inputs and real not in taken and (plain or not os.path.exists(real))

    out = {}
    for path in dict.fromkeys(paths):
        stem, ext = os.path.splitext(os.path.basename(path))
        if ext.lower() not in (".jpg", ".jpeg", ".png"):
            stem, ext = stem + ext, ".jpg"
        candidate, n = os.path.join(folder, stem + ext), 2
        while not free(candidate, plain=n == 2):
            candidate, n = os.path.join(folder, f"{stem}-{n}{ext}"), n + 1
        taken.add(os.path.realpath(candidate))
        out[path] = candidate
    return out


FACE_COLUMNS = ["file", "face", "x1", "y1", "x2", "y2", "confidence", "age", "age_low",
                "age_high", "note"]


def _round(value, digits=3):
    return None if value is None else round(value, digits)


def _interval_text(age: float, low: float | None, high: float | None, coverage,
                   age_range=None) -> str:
    text = f"{age:.1f} years"
    if age_range and not age_range[0] < age < age_range[1]:
        text += f" (clipped: the model was trained on ages {age_range[0]:g}-{age_range[1]:g})"
    if low is not None:
        text += f" ({coverage:.0%} interval {low:.1f}-{high:.1f})" if coverage else \
            f" (interval {low:.1f}-{high:.1f})"
    return text


def _model_summary(model: AgeModel, cuts=()) -> dict:
    out = export_format.card_summary(model.card) if model.card else {"card": None,
                                                                     "path": model.path}
    if cuts:
        out["decisions"] = [c.summary() for c in cuts]
    return out


def decision_column(cut: decisions.Cut) -> str:
    return f"decision_{cut.threshold:g}"


def face_decisions(age: float, cuts) -> dict[str, str]:
    """{threshold: over / under / uncertain} of one served age."""
    return {f"{c.threshold:g}": str(decisions.decide([age], c)[0]) for c in cuts}


def _decision_text(calls: dict[str, str]) -> str:
    return "".join(f"; {call} {t}" if call != decisions.UNCERTAIN else f"; uncertain at {t}"
                   for t, call in calls.items())


def face_rows(path: str, faces, error: str | None, cuts=()) -> list[dict]:
    """Detect mode's rows of one photo: one per face (with its decision at each cut); a
    photo without faces gets one row saying so (or its error)."""
    rows = [{"file": path, "face": f.index, "x1": round(f.box[0], 1), "y1": round(f.box[1], 1),
             "x2": round(f.box[2], 1), "y2": round(f.box[3], 1),
             "confidence": round(f.confidence, 4), "age": round(f.age, 3),
             "age_low": _round(f.age_low), "age_high": _round(f.age_high), "note": "",
             "landmarks": {k: [round(v[0], 1), round(v[1], 1)] for k, v in f.landmarks.items()},
             **({"decisions": face_decisions(f.age, cuts)} if cuts else {})}
            for f in faces]
    if not rows:
        rows.append({"file": path, "face": None, "x1": None, "y1": None, "x2": None, "y2": None,
                     "confidence": None, "age": None, "age_low": None, "age_high": None,
                     "note": f"error: {error}" if error else "no face found", "landmarks": {}})
    return rows


def row_lines(rows: list[dict], model: AgeModel) -> list[str]:
    """The plain-text lines of detect-mode rows (errors go to stderr, not here)."""
    lines = []
    for r in rows:
        if r["face"] is None:
            if not r["note"].startswith("error"):
                lines.append(f"{r['file']}: {r['note']}")
            continue
        lines.append(f"{r['file']} face {r['face']} at ({r['x1']:.0f}, {r['y1']:.0f}, "
                     f"{r['x2']:.0f}, {r['y2']:.0f}), confidence {r['confidence']:.2f}: "
                     + _interval_text(r["age"], r["age_low"], r["age_high"], model.coverage,
                                    model.age_range) + _decision_text(r.get("decisions", {})))
    return lines


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**{k: "" if v is None else v for k, v in r.items()},
                      **{f"decision_{t}": call for t, call in r.get("decisions", {}).items()}}
                     for r in rows)
    return buf.getvalue()


def crop_warning(height: int, width: int) -> str:
    """Why an image is unlike a face crop ('' when its shape is like one)."""
    if min(height, width) < MIN_CROP_SIDE:
        return f"{width}x{height} px is too small to show a face"
    if max(height, width) / min(height, width) > MAX_CROP_ASPECT:
        return f"{width}x{height} px is not the shape of a face crop (is it a whole photo?)"
    return ""


def predict_files(model: AgeModel, paths: list[str], batch_size: int = 32,
                  max_megapixels: float = photos.MAX_MEGAPIXELS) -> list[dict]:
    """Predicts every readable face crop, decoded and resized as the input pipeline does; a
    bad file gets an error entry, the others still run; a file unlike a face crop gets a
    warning."""
    results, good = [], []
    for path in paths:
        entry = {"path": path, "age": None, "age_low": None, "age_high": None, "error": "",
                 "warning": ""}
        results.append(entry)
        try:
            decoded = photos.read_photo(path, max_megapixels)
        except FileNotFoundError:
            entry["error"] = "file not found"
            continue
        except (OSError, ValueError) as e:
            entry["error"] = str(e)
            continue
        entry["warning"] = crop_warning(*decoded.shape[:2])
        image = pipeline.resize(tf.constant(decoded), model.image_size)
        good.append((entry, image.numpy()))
    if good:
        out = model(np.stack([image for _, image in good]).astype(np.float32), batch_size)
        for i, (entry, _) in enumerate(good):
            for key in ("age", "age_low", "age_high"):
                if key in out:
                    entry[key] = float(out[key][i])
    return results


def format_results(results: list[dict], output: str, model: AgeModel, cuts=()
                   ) -> tuple[str, str]:
    """(stdout text, stderr text) of --faces=given results as `output`."""
    err = "".join(f"{r['path']}: error: {r['error']}\n" for r in results if r["error"])
    err += "".join(f"{r['path']}: warning: {r['warning']}\n" for r in results if r["warning"])
    if output == "csv":
        rows = [{**r, **{k: "" if r[k] is None else f"{r[k]:.3f}" for k in ("age", "age_low", "age_high")}}
                for r in results]
        return _csv(rows, ["path", "age", "age_low", "age_high", "error", "warning"]
                    + [decision_column(c) for c in cuts]), err
    if output == "json":
        return json.dumps({"model": _model_summary(model, cuts), "results": results},
                          indent=2) + "\n", err
    out = "".join(f"{r['path']}: " + _interval_text(r["age"], r["age_low"], r["age_high"],
                                                     model.coverage, model.age_range)
                  + _decision_text(r.get("decisions", {})) + "\n"
                  for r in results if not r["error"])
    return out, err
