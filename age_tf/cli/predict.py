"""age-tf-predict: the age of each photo, from an exported SavedModel.

Example:
  age-tf-predict --model=runs/demo/mobilenet_v2_full/export face1.jpg face2.png
  age-tf-predict --model=runs/demo/mobilenet_v2_full --output=csv photos/*.jpg > ages.csv
"""

from __future__ import annotations

import csv
import os
import sys

from absl import flags

from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "An export/ folder, or a run directory holding one.")
flags.DEFINE_enum("output", "text", ["text", "csv"], "Human-readable lines or CSV.")
flags.DEFINE_integer("batch_size", 32, "Photos per call.")
flags.mark_flag_as_required("model")


def predict_files(model_path: str, paths: list[str], batch_size: int = 32) -> list[dict]:
    """Predicts every readable image; a bad file gets an error entry, the others still run."""
    import tensorflow as tf

    from age_tf import export, pipeline

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


def main(argv):
    paths = argv[1:]
    if not paths:
        raise ValueError("give one or more photo paths after the flags")
    results = predict_files(FLAGS.model, paths, FLAGS.batch_size)
    if FLAGS.output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=["path", "age", "error"])
        writer.writeheader()
        for r in results:
            writer.writerow({**r, "age": "" if r["age"] is None else f"{r['age']:.3f}"})
    else:
        for r in results:
            if r["error"]:
                print(f"{r['path']}: error: {r['error']}", file=sys.stderr)
            else:
                print(f"{r['path']}: {r['age']:.1f} years")
    if any(r["error"] for r in results):
        sys.exit(1)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
