"""Age of photos through an exported SavedModel (what age-tf-predict serves)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import tensorflow as tf

from age_tf import export, pipeline
from age_tf.config import field


@dataclasses.dataclass
class PredictConfig:
    """How `age-tf-predict` runs (the photos are its positional arguments)."""

    model: str = field(None, "An export/ folder, or a run directory holding one.")
    output: str = field("text", "Human-readable lines or CSV.", choices=("text", "csv"))
    batch_size: int = field(32, "Photos per call.")


def predict_files(model_path: str, paths: list[str], batch_size: int = 32) -> list[dict]:
    """Predicts every readable image; a bad file gets an error entry, the others still run."""
    if os.path.isdir(os.path.join(model_path, "export")):
        model_path = os.path.join(model_path, "export")
    if not os.path.exists(os.path.join(model_path, "saved_model.pb")):
        raise FileNotFoundError(f"{model_path}: no SavedModel here; pass --model=<run>/export")
    serve = tf.saved_model.load(model_path).signatures[export.BYTES_SIGNATURE]
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
