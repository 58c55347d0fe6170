"""Trivial baselines for every table of results: what a CNN must beat to have learned anything.

Two, computed on the same splits and with the same metrics as the CNN rows:
  - training median: every test face gets the median age of the training split;
  - ridge on pixels: a linear model on a 8x8 grey thumbnail and 4x4 blocks of mean colour
    (112 numbers a face, read through the input pipeline's own decode and resize), its
    penalty chosen on the validation split.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from age_tf import fileio, metrics, ridge
from age_tf.data import pipeline, prepared, sources
from age_tf.errors import DataError
from age_tf.evaluate import evaluation

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
NAMES = {"median": "training median", "ridge": "ridge on pixels"}


def pixel_features(manifest: pd.DataFrame, images_dir: str, crop_faces: bool = False,
                   align: bool = False) -> np.ndarray:
    """(N, 112) features: an 8x8 grey thumbnail and the mean colour of 4x4 blocks, in [0, 1].

    crop_faces: the images are full photos; the face box (plus the release margin) is used.
    align: each face is cut by its aligned square (as models trained with --align see it).
    """
    cfg = pipeline.PipelineConfig(batch_size=256, crop_faces=crop_faces, align=align)
    images = pipeline.map_images(None, manifest, images_dir, cfg, 32, "pixels") / 255.0  # N,32,32,3
    n = len(images)
    grey = images.mean(-1).reshape(n, 8, 4, 8, 4).mean((2, 4)).reshape(n, 64)
    blocks = images.reshape(n, 4, 8, 4, 8, 3).mean((2, 4)).reshape(n, 48)
    return np.concatenate([grey, blocks], axis=1).astype(np.float64)


def _frame(manifest: pd.DataFrame, pred: np.ndarray, truth_csv: str | None) -> pd.DataFrame:
    f = pd.DataFrame({"true_age": manifest["age"].to_numpy(float), "predicted_age": pred,
                      "identity": manifest["identity"].to_numpy(),
                      "row": manifest["row"].to_numpy(), "path": manifest["path"].to_numpy()})
    return evaluation.attach_rendered(f, truth_csv) if truth_csv else f


class Fitted:
    """Both baselines fitted on a prepared folder's training split (the ridge's penalty
    chosen on its validation split), ready to predict any manifest."""

    def __init__(self, data_dir: str, align: bool = False):
        self.frames, self.images_dir = {}, None
        for split in ("train", "val", "test"):
            self.frames[split], self.images_dir = prepared.load_manifest(data_dir, split)
        self.align = align
        self.full = prepared.PreparedDir(data_dir).framing() == sources.FULL_PHOTOS
        ages = {s: f["age"].to_numpy(float) for s, f in self.frames.items()}
        self.median = float(np.median(ages["train"]))
        self.feats = {s: pixel_features(f, self.images_dir, self.full, align)
                      for s, f in self.frames.items()}
        self.mu, self.sd = self.feats["train"].mean(0), self.feats["train"].std(0) + 1e-6
        z = {s: (v - self.mu) / self.sd for s, v in self.feats.items()}
        stats = ridge.statistics(z["train"], ages["train"])
        self.val_mae = {a: metrics.mae(ages["val"], ridge.predict(z["val"], ridge.solve(*stats, a)))
                        for a in ALPHAS}
        self.alpha = min(self.val_mae, key=self.val_mae.get)
        self.weights = ridge.solve(*stats, self.alpha)

    def ridge_predict(self, manifest: pd.DataFrame, images_dir: str, feats=None,
                      full: bool = False) -> np.ndarray:
        if feats is None:
            feats = pixel_features(manifest, images_dir, full, self.align)
        return ridge.predict((feats - self.mu) / self.sd, self.weights)


def compute(data_dir: str, bootstrap: int = 1000, seed: int = 0,
            ground_truth: str | None = None, align: bool = False) -> dict:
    """Both baselines' test metrics (as evaluation.compute_metrics gives for a CNN run; with
    `ground_truth`, also against the rendered ages).

    Returns:
      {"median": metrics, "ridge": metrics with "alpha"}.
    """
    fit = Fitted(data_dir, align)
    test = fit.frames["test"]
    # No bootstrap for a constant prediction: its correlations are undefined in every sample.
    out = {"median": evaluation.compute_metrics(
        _frame(test, np.full(len(test), fit.median), ground_truth), 0, seed)}
    out["median"]["value"] = fit.median
    pred = fit.ridge_predict(test, fit.images_dir, fit.feats["test"])
    out["ridge"] = evaluation.compute_metrics(_frame(test, pred, ground_truth), bootstrap, seed)
    out["ridge"].update(alpha=fit.alpha, val_mae_years=fit.val_mae[fit.alpha])
    return out


def transfer(fit: Fitted, other_dir: str, seed: int = 0) -> dict:
    """Both baselines, fitted on one dataset, scored on another's test split (cross-dataset
    rows beside the models'): {"median": metrics, "ridge": metrics}, no bootstrap."""
    manifest, images_dir = prepared.load_manifest(other_dir, "test")
    full = prepared.PreparedDir(other_dir).framing() == sources.FULL_PHOTOS
    return {"median": evaluation.compute_metrics(
                _frame(manifest, np.full(len(manifest), fit.median), None), 0, seed),
            "ridge": evaluation.compute_metrics(
                _frame(manifest, fit.ridge_predict(manifest, images_dir, full=full), None), 0,
                seed)}


def write(data_dir: str, path: str, bootstrap: int = 1000, seed: int = 0,
          ground_truth: str | None = None) -> dict:
    """Computes the baselines and writes them to path (JSON); returns them."""
    result = compute(data_dir, bootstrap, seed, ground_truth)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fileio.atomic_write_text(path, json.dumps(result, indent=2, default=float))
    return result


def read(path: str) -> dict:
    """A baselines.json written by `write`.

    Raises:
      DataError: unreadable, or not baselines (naming the file).
    """
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"--baselines={path}: not a readable baselines.json ({e})") from e
    if not isinstance(result, dict) or not all(k in NAMES and isinstance(v, dict)
                                               for k, v in result.items()):
        raise DataError(f"--baselines={path}: not a baselines.json (keys {sorted(NAMES)})")
    return result


def table_rows(result: dict) -> list[dict]:
    """Rows for report.table2_markdown, labelled as baselines."""
    return [{**m, "backbone": NAMES[k], "tune": "baseline"} for k, m in result.items()]
