"""Label audit: images whose label a model strongly disagrees with, and surviving near duplicates.

Suspected mislabels are ranked on held-out predictions: features of the run's backbone for
every image, then K ridge-regression heads, each fitted on the other folds' images (folds
split by identity), so no image's own label shaped the prediction it is judged by. Prefer a
head-mode run: a fully fine-tuned backbone has seen the training labels.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
from absl import logging

from age_tf import fileio, metrics, plots
from age_tf import ridge as ridge_fit
from age_tf.data import dedup, images, pipeline, prepared
from age_tf.evaluate import evaluation, ground_truth
from age_tf.evaluate.evaluate_config import FEATURE_STORE_HELP, AuditConfig  # noqa: F401  (its flags)
from age_tf.train import feature_cache, models
from age_tf.train.run_dir import RunDir

SPLITS = ("train", "val", "test")

# The refit (robust_heldout): rounds of fits without the previous round's suspects, those
# beyond REFIT_SIGMAS local deviations; the deviations per SCALE_BINS bins of prediction.
# Chosen on a synthetic set of another seed than the demo's (docs/measurement_history.md).
ROUNDS, REFIT_SIGMAS, SCALE_BINS = 4, 3.0, 4


def fold_assignment(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per row, drawn per group (identity): a person's photos share a fold."""
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    return rng.integers(0, folds, len(uniq))[inverse]


def out_of_fold_predictions(features: np.ndarray, ages: np.ndarray, groups: np.ndarray,
                            folds: int = 5, ridge: float = 1.0, seed: int = 0,
                            fitted: np.ndarray | None = None) -> np.ndarray:
    """Ridge regression predictions, each from a fit that excluded the image's fold.

    Folds are drawn by group (identity), so a person's other photos do not vouch for them.
    Fitted from per-fold Gram matrices (X_k^T X_k, X_k^T y_k): each fold's fit is the total
    minus its own part, so memory holds one fold's rows in float64 at a time, not copies of
    the whole feature matrix (150k images x 1,280 features: 1.5 GB per float64 copy).

    Args:
      fitted: rows the fits may learn from (default all); every row is predicted.
    """
    fold_of = fold_assignment(groups, folds, seed)
    fitted = np.ones(len(ages), bool) if fitted is None else fitted
    d = features.shape[1] + 1
    gram, moment = np.zeros((folds, d, d)), np.zeros((folds, d))
    members = [np.flatnonzero(fold_of == k) for k in range(folds)]
    for k, rows in enumerate(members):
        rows = rows[fitted[rows]]
        if len(rows):
            gram[k], moment[k] = ridge_fit.statistics(features[rows], ages[rows])
    pred = np.zeros(len(ages))
    for k, rows in enumerate(members):
        if not len(rows) or len(rows) == len(ages):
            continue
        w = ridge_fit.solve(gram.sum(0) - gram[k], moment.sum(0) - moment[k], ridge)
        pred[rows] = ridge_fit.predict(features[rows], w)
    return pred


def local_scale(pred: np.ndarray, residuals: np.ndarray, trusted: np.ndarray,
                bins: int = SCALE_BINS) -> np.ndarray:
    """Each row's residual scale: 1.4826 x the median |residual| of the trusted rows whose
    prediction falls in the same quantile bin (errors grow with age: a 10-year miss is
    common at 70 and rare at 8), a robust standard deviation that mislabels cannot inflate."""
    edges = np.quantile(pred[trusted], np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, pred)
    scale = np.array([1.4826 * np.median(np.abs(residuals[trusted & (which == b)]))
                      if np.any(trusted & (which == b)) else np.nan for b in range(bins)])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.4826 * np.median(
        np.abs(residuals[trusted])))
    return scale[which]


def robust_heldout(features: np.ndarray, ages: np.ndarray, groups: np.ndarray,
                   folds: int = 5, seed: int = 0, rounds: int = ROUNDS,
                   sigmas: float = REFIT_SIGMAS, bins: int = SCALE_BINS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out predictions refitted without the suspects, and each row's residual scale.

    One cross-fitted pass lets the wrong labels pull the fits towards themselves; so, as
    cleanlab's CleanLearning does, the fits are repeated `rounds` times, each leaving out
    the rows the previous one judged beyond `sigmas` local robust deviations (judging is
    still held out: a row's prediction never comes from a fit that saw its fold).

    Returns:
      (prediction, scale, left out of the last fit), one value per row.
    """
    fitted = np.ones(len(ages), bool)
    for _ in range(rounds):
        pred = out_of_fold_predictions(features, ages, groups, folds, seed=seed, fitted=fitted)
        residuals = pred - ages
        scale = local_scale(pred, residuals, fitted, bins)
        fitted = np.abs(residuals) <= sigmas * scale
    return pred, scale, ~fitted


CLEAN_THRESHOLDS = (2.0, 2.5, 3.0, 3.5, 4.0)


def threshold_tradeoff(suspicion: np.ndarray, is_bad: np.ndarray, cleaned: np.ndarray) -> list:
    """Precision and recall of age-tf-clean's rule (suspicion > sigmas) at each of
    CLEAN_THRESHOLDS, on the rows cleaning may change (train + val): what its --sigmas
    trades, measured where the truth is known."""
    out = []
    for sigmas in CLEAN_THRESHOLDS:
        flagged = cleaned & (suspicion > sigmas)
        hits = int((flagged & is_bad).sum())
        out.append({"sigmas": sigmas, "flagged": int(flagged.sum()),
                    "precision": hits / max(int(flagged.sum()), 1),
                    "recall": hits / max(int((cleaned & is_bad).sum()), 1)})
    return out


def precision_at_k(scores_order_truth: np.ndarray, ks) -> dict:
    """Share of true positives among the top k, for each k."""
    return {int(k): float(scores_order_truth[:k].mean()) for k in ks if k <= len(scores_order_truth)}


DUPLICATE_COLUMNS = ["path_a", "split_a", "age_a", "path_b", "split_b", "age_b", "hamming",
                     "correlation"]


def surviving_duplicates(manifest: pd.DataFrame, images_dir: str, max_distance: int = 10,
                         min_correlation: float = 0.97, workers: int | None = None,
                         stored: str | None = None, max_pairs: int = 1000
                         ) -> tuple[pd.DataFrame, dict]:
    """The most similar near-duplicate pairs among the prepared images, at looser thresholds
    than prepare's, and how many there are in all.

    What prepare removed cannot show up here; what is listed are pairs close enough to
    look at: the same photo edited or cropped differently, or burst shots. The search is
    complete; the list keeps the max_pairs most correlated. Fingerprints come from
    prepare's fingerprints.npz (`stored`) for every unchanged file.

    Returns:
      (pairs most correlated first, {"found": all pairs, "across_splits": of those, across
      splits, "listed": rows of the frame}).
    """
    ok, all_hashes, all_thumbs = images.fingerprints(manifest["path"].tolist(), images_dir,
                                                     stored, workers)
    idx = np.flatnonzero(ok)
    hashes = all_hashes[idx]
    x = dedup.standardize_thumbnails(all_thumbs[idx])
    path, age, split = (manifest[c].to_numpy() for c in ("path", "age", "split"))
    ranked = dedup.most_similar_pairs(hashes, x, max_distance, min_correlation, max_pairs,
                                      labels=split[idx])
    ia, ib = idx[ranked.pairs[:, 0]], idx[ranked.pairs[:, 1]]
    frame = pd.DataFrame({
        "path_a": path[ia], "split_a": split[ia], "age_a": age[ia].astype(int),
        "path_b": path[ib], "split_b": split[ib], "age_b": age[ib].astype(int),
        "hamming": np.bitwise_count(all_hashes[ia] ^ all_hashes[ib]).astype(int),
        "correlation": ranked.correlation.astype(float)}, columns=DUPLICATE_COLUMNS)
    return frame, {"found": ranked.total, "across_splits": ranked.total_across,
                   "listed": len(frame)}


def backbone_features(model_dir: str, data_dir: str, splits=SPLITS, feature_store: str = ""
                      ) -> tuple[np.ndarray, pd.DataFrame, str]:
    """Features of the run's backbone for every image of `splits` (read from, and added
    to, `feature_store` when given: see feature_cache.FeatureStore).

    Returns:
      (features [N, D], the manifests of the splits with a `split` column, images folder).
    """
    run = evaluation.load_run(model_dir)
    frames = []
    images_dir = None
    for split in splits:
        m, images_dir = prepared.load_manifest(data_dir, split)
        frames.append(m.assign(split=split))
    manifest = pd.concat(frames, ignore_index=True)
    extractor = models.feature_extractor(run.model)
    if feature_store:
        feats = feature_cache.FeatureStore(feature_store).features(
            extractor, manifest, images_dir, run.pipeline_config(), run.image_size, mirrored=False)
    else:
        feats = pipeline.map_images(lambda x: extractor(x, training=False), manifest, images_dir,
                                    run.pipeline_config(), run.image_size, "backbone features")
    return feats, manifest, images_dir


def heldout_suspects(model_dir: str, data_dir: str, splits=SPLITS, folds: int = 5,
                     seed: int = 0, feature_store: str = ""
                     ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Held-out predictions of every image of `splits`, most suspicious first.

    Features come from the run's backbone; each image's prediction from a ridge fitted on
    the other identity folds of the same splits, so neither its label nor its person's other
    labels shaped it, refitted without the suspects (robust_heldout).

    Returns:
      (suspects: path, split, age, identity, row, heldout_prediction, residual,
       residual_scale, suspicion (|residual| / residual_scale), indexed by manifest
       position; the manifest of the splits; the images folder).
    """
    feats, manifest, images_dir = backbone_features(model_dir, data_dir, splits, feature_store)
    ages = manifest["age"].to_numpy(float)
    pred, scale, _ = robust_heldout(feats, ages, manifest["identity"].to_numpy(), folds, seed)
    suspects = manifest[["path", "split", "age", "identity", "row"]].copy()
    suspects["heldout_prediction"] = pred
    suspects["residual"] = pred - ages
    suspects["residual_scale"] = scale
    # In local deviations: how unlikely the label is given what the model can tell.
    suspects["suspicion"] = np.abs(suspects["residual"]) / scale
    return suspects.sort_values("suspicion", ascending=False, kind="stable"), manifest, images_dir


def audit(cfg: AuditConfig) -> dict:
    """Ranks suspected mislabels and lists surviving near duplicates (see AuditConfig).

    The run's backbone provides the features; all three splits are audited. With
    `cfg.truth_csv` (a synthetic set's ground_truth.csv), adds precision@k of the ranking
    against the rows whose label is `cfg.mislabel_years` or more from the rendered age.

    Returns:
      Summary (also written to audit.json).
    """
    out_dir = cfg.out_dir or RunDir(cfg.model_dir).audit
    if cfg.out_dir:
        fileio.check_writable_dir(out_dir, "out_dir")
    else:
        fileio.check_writable_dir(out_dir, "model_dir", cfg.model_dir)
    os.makedirs(out_dir, exist_ok=True)
    suspects, manifest, images_dir = heldout_suspects(cfg.model_dir, cfg.data_dir, SPLITS,
                                                      cfg.folds, cfg.seed, cfg.feature_store)
    ages = manifest["age"].to_numpy(float)
    pred = suspects.sort_index()["heldout_prediction"].to_numpy()
    suspects = suspects.reset_index(drop=True)
    suspects.to_csv(os.path.join(out_dir, "suspected_mislabels.csv"), index=False)
    top = suspects.head(cfg.gallery)
    if len(top):
        faces = [pipeline.read_image(os.path.join(images_dir, p)) for p in top["path"]]
        plots.plot_face_grid(
            faces, [f"label {a} / model {p:.0f}" for a, p in zip(top["age"], top["heldout_prediction"])],
            os.path.join(out_dir, "suspected_mislabels.png"),
            "Strongest disagreement between label and held-out prediction", cols=6)
    dups, dup_counts = surviving_duplicates(
        manifest, images_dir, workers=cfg.workers, max_pairs=cfg.max_duplicate_pairs,
        stored=os.path.join(cfg.data_dir, "fingerprints.npz"))
    dups.to_csv(os.path.join(out_dir, "near_duplicate_pairs.csv"), index=False)
    oof_mae = metrics.mae(ages, pred)
    summary = {"images": len(manifest), "folds": cfg.folds, "heldout_mae_years": oof_mae,
               "near_duplicate_pairs": dup_counts["found"],
               "near_duplicate_pairs_across_splits": dup_counts["across_splits"],
               "near_duplicate_pairs_listed": dup_counts["listed"]}
    if cfg.truth_csv:
        merged = ground_truth.for_rows(cfg.truth_csv, suspects, ("label_age", "rendered_age"))
        is_bad = ((merged["label_age"] - merged["rendered_age"]).abs() >= cfg.mislabel_years).to_numpy()
        n_bad = int(is_bad.sum())
        ks = sorted({10, 25, 50, 100, n_bad} - {0})
        summary["ground_truth"] = {
            "mislabelled_in_prepared_data": n_bad,
            "prevalence": float(is_bad.mean()),
            "precision_at_k": precision_at_k(is_bad, ks),
            "cleaning_thresholds": threshold_tradeoff(
                suspects["suspicion"].to_numpy(), is_bad, suspects["split"].to_numpy() != "test"),
        }
    fileio.atomic_write_text(os.path.join(out_dir, "audit.json"), json.dumps(summary, indent=2))
    logging.info("audit: %s", summary)
    return summary
