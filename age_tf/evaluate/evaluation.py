"""Evaluates a trained run on a split: predictions, metrics with bootstrap CIs, figures."""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf import decisions, fileio, labels, metrics, plots
from age_tf.data import pipeline, prepared, sources
from age_tf.errors import DataError
from age_tf.evaluate import ground_truth
from age_tf.evaluate.evaluate_config import EvaluateConfig  # noqa: F401  (its flags)
from age_tf.train import card, heads, intervals, models
from age_tf.train.run_dir import DataMatch, RunDir, config_digest, match_data
from age_tf.train.train_config import TrainConfig

GALLERY_MIN_ERROR = 40.0  # the study's Figures 5/6
MID_ERROR_RANGE = (15.0, 20.0)  # the study's Figures 7/8
# A distribution head's own interval for a model without calibrated ones (their usual level).
DISTRIBUTION_COVERAGE = 0.9


@dataclasses.dataclass
class TrainedRun:
    """A finished run as evaluation sees it: the trained Keras model and how it was fed."""

    dir: RunDir
    model: keras.Model
    config: dict  # the run's config.json

    @property
    def image_size(self) -> int:
        return int(self.config["model"]["image_size"])

    def pipeline_config(self, batch_size: int = 64, data_dir: str | None = None
                        ) -> pipeline.PipelineConfig:
        """The evaluation input settings: the face cropping the run was trained with.

        data_dir: the folder evaluated; when it holds full photos with face boxes
        (IMDB-Clean) and the run trained on crops, each face is cut with the release's margin
        around its box (0.4 of its side per side), which is how IMDB-WIKI's crops were cut
        from the same photos, so the model sees faces framed as in training.
        """
        fed = TrainConfig.from_run(self.dir).evaluation_pipeline(batch_size)
        if (data_dir and not fed.crop_faces
                and prepared.PreparedDir(data_dir).framing() == sources.FULL_PHOTOS):
            return dataclasses.replace(fed, crop_faces=True, face_margin=sources.RELEASE_MARGIN)
        return fed

    @functools.cached_property
    def calibration(self) -> dict | None:
        """The run's interval calibration (None for a run trained before intervals)."""
        return self.dir.read_calibration()

    @property
    def name(self) -> str:
        return f"{self.config['model']['backbone']} ({self.config['model']['tune']})"


def load_run(model_dir: str) -> TrainedRun:
    """The run's saved Keras model (best weights) and its config.json.

    Raises:
      FileNotFoundError: the run has no model.keras / config.json (not trained to the end).
    """
    run = RunDir(model_dir)
    for p in (run.model_keras, run.config, run.metrics):
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"{p} not found: --model_dir must be a finished age-tf-train run directory")
    with open(run.config) as f:
        config_text = f.read()
    with open(run.metrics) as f:
        trained_with = json.load(f).get("config_digest")
    if trained_with is not None and trained_with != config_digest(config_text):
        raise DataError(
            f"{run.config} is not the configuration its model.keras was trained with (another "
            f"training wrote it later into {model_dir}?): its model and files cannot be told "
            "apart; train again into a new --model_dir")
    return TrainedRun(run, keras.models.load_model(run.model_keras), json.loads(config_text))


def predict(run: TrainedRun, manifest: pd.DataFrame, images_dir: str,
            data_dir: str | None = None) -> pd.DataFrame:
    """Predicted age of every manifest row (of `data_dir`: its framing decides the crop).

    Raises:
      ValueError: an image failed to decode (predictions would not line up with rows).
    """
    model, dist = run.model, models.with_distribution(run.model)
    calibration = run.calibration
    # Normalized intervals read the pooled features: computed in the same backbone pass.
    views = ((models.feature_extractor(model), models.head_model(model))
             if (calibration or {}).get("method") == intervals.NORMALIZED else None)

    def served_and_more(x):  # one backbone pass for the age, its logits, its features
        if views is not None:
            f = views[0](x, training=False)
            parts = [tf.reshape(tf.cast(views[1](f), tf.float32), [-1, 1])]
            if dist:
                parts.append(tf.cast(models.head_model(model, raw=True)(f), tf.float32))
            return tf.concat(parts + [tf.cast(f, tf.float32)], 1)
        age, logits = dist(x, training=False)
        return tf.concat([tf.cast(age, tf.float32)[:, None], tf.cast(logits, tf.float32)], 1)

    more = views is not None or dist
    preds = pipeline.map_images(served_and_more if more else (lambda x: model(x, training=False)),
                                manifest, images_dir, run.pipeline_config(data_dir=data_dir),
                                run.image_size, "predicting")
    features = None
    if views is not None:
        width = int(views[0].output.shape[-1])
        features, preds = preds[:, -width:], preds[:, :-width]
    out = manifest[["path", "age", "identity", "row"]].copy()
    out = out.rename(columns={"age": "true_age"})
    out["predicted_age"] = labels.to_years((preds[:, 0] if more else preds).astype(np.float64))
    out["abs_error"] = (out["predicted_age"] - out["true_age"]).abs()
    if calibration:
        out["age_low"], out["age_high"] = intervals.interval(out["predicted_age"], calibration,
                                                             features)
    if dist:
        # The model's own interval: the central part of its age distribution, at the
        # conformal intervals' coverage (uncalibrated: beside them, for comparison).
        coverage = (calibration or {}).get("coverage", DISTRIBUTION_COVERAGE)
        out["dist_low"], out["dist_high"] = heads.distribution_interval(
            heads.age_distribution(preds[:, 1:]), coverage)
    return out


# Groups a synthetic set's ground truth records as rendered (the release's own labels of
# gender may be missing or wrong; skin tone no release labels).
TRUTH_GROUPS = ("skin_tone",)


def attach_rendered(pred: pd.DataFrame, truth_csv: str) -> pd.DataFrame:
    """Adds the synthetic set's rendered age of each row (column rendered_age), and the
    groups it was rendered in where the truth records them (TRUTH_GROUPS)."""
    out = pred.copy()
    have = set(pd.read_csv(truth_csv, nrows=0).columns)
    columns = ("rendered_age", *(c for c in TRUTH_GROUPS if c in have))
    truth = ground_truth.for_rows(truth_csv, pred, columns)
    for c in columns:
        out[c] = truth[c]
    return out


def _rendered_metrics(pred: pd.DataFrame, bootstrap: int, seed: int, groups) -> dict:
    """PLCC and MAE against the rendered ages: the error of the model, not of the labels."""
    t = pred["rendered_age"].to_numpy(float)
    p = pred["predicted_age"].to_numpy(float)
    m = {"plcc": metrics.plcc(t, p), "mae_years": metrics.mae(t, p),
         "by_decade": metrics.error_by_decade(t, p)}
    if bootstrap:
        m["plcc_ci95"] = metrics.bootstrap_ci(t, p, metrics.plcc, bootstrap, seed, groups=groups)
        m["mae_years_ci95"] = metrics.bootstrap_ci(t, p, metrics.mae, bootstrap, seed, groups=groups)
    return m


def interval_metrics(pred: pd.DataFrame, calibration: dict) -> dict:
    """Test coverage of the served intervals (overall, per decade of true age), mean width;
    also against the rendered ages when the predictions carry them."""
    out = {"calibrated_coverage": calibration["coverage"],
           # Runs before learned scales wrote a description here: binned, all of them.
           "method": (intervals.NORMALIZED if calibration.get("method") == intervals.NORMALIZED
                      else intervals.BINNED),
           **metrics.coverage_report(pred["true_age"], pred["age_low"], pred["age_high"])}
    width = pred["age_high"] - pred["age_low"]
    # What the intervals are good for beyond coverage: answering only the surest faces.
    out["risk_coverage"] = metrics.risk_coverage(pred["true_age"], pred["predicted_age"], width)
    if "rendered_age" in pred:
        out["rendered"] = metrics.coverage_report(pred["rendered_age"], pred["age_low"],
                                                    pred["age_high"])
        out["risk_coverage"]["rendered_mae_years"] = metrics.risk_coverage(
            pred["rendered_age"], pred["predicted_age"], width)["mae_years"]
    if "dist_low" in pred:
        out["distribution"] = distribution_interval_metrics(pred)
    return out


def distribution_interval_metrics(pred: pd.DataFrame) -> dict:
    """Coverage and width of a distribution head's own (uncalibrated) intervals."""
    out = metrics.coverage_report(pred["true_age"], pred["dist_low"], pred["dist_high"])
    if "rendered_age" in pred:
        out["rendered"] = metrics.coverage_report(pred["rendered_age"], pred["dist_low"],
                                                  pred["dist_high"])
    return out


# The groups a manifest may name (gender everywhere; race where the release gives it), and
# those a synthetic set's truth adds.
GROUP_COLUMNS = ("gender", "race", *TRUTH_GROUPS)


def group_labels(pred: pd.DataFrame, column: str) -> np.ndarray:
    """Each face's group: gender as male / female / unknown, race as named ('' unknown)."""
    if column == "gender":
        g = pred["gender"].to_numpy(float)
        return np.where(g == 1, "male", np.where(g == 0, "female", "unknown")).astype(object)
    return pred[column].fillna("").replace("", "unknown").to_numpy(object)


def errors_by_group(pred: pd.DataFrame, bootstrap: int, seed: int) -> dict:
    """metrics.error_by_group for each group column the predictions carry, against the
    labels (and the rendered ages when known), intervals resampling people."""
    ids = pred["identity"].to_numpy() if "identity" in pred else None
    low, high = (pred["age_low"], pred["age_high"]) if "age_low" in pred else (None, None)
    out = {}
    for column in GROUP_COLUMNS:
        if column not in pred:
            continue
        groups = group_labels(pred, column)
        out[column] = metrics.error_by_group(pred["true_age"], pred["predicted_age"], groups,
                                             low, high, ids, bootstrap, seed)
        if "rendered_age" in pred:
            out[column]["rendered"] = metrics.error_by_group(
                pred["rendered_age"], pred["predicted_age"], groups, low, high, ids, bootstrap,
                seed)
    return out


# The false-over curve of the report's figure: thresholds every 5 years over the ages that
# decisions are asked about.
SWEEP_THRESHOLDS = tuple(range(10, 75, 5))
_CALL_CODE = {decisions.OVER: 1.0, decisions.UNDER: -1.0, decisions.UNCERTAIN: 0.0}


def _false_over(threshold: float):
    """fn(true, call codes) -> the share of faces under the threshold called over."""
    def fn(t, c):
        under = t < threshold
        return float((c[under] == 1).mean()) if under.any() else float("nan")
    return fn


def _band_wrong(low: float, high: float, side: str):
    """fn(true, call codes) -> the share of faces aged [low, high) called the wrong side."""
    wrong = 1 if side == "under" else -1

    def fn(t, c):
        inside = (t >= low) & (t < high)
        return float((c[inside] == wrong).mean()) if inside.any() else float("nan")
    return fn


def _band_metrics(t, calls, codes, threshold, ids, bootstrap: int, seed: int) -> dict:
    """decisions.band_rates with each wrong-call rate's 95% interval (over people)."""
    out = decisions.band_rates(t, calls, threshold)
    for name, low, high, side in decisions.age_bands(threshold):
        if bootstrap and out[name]["faces"]:
            out[name]["wrong_ci95"] = metrics.bootstrap_ci(
                t, codes, _band_wrong(low, high, side), bootstrap, seed, groups=ids)
    return out


def decision_metrics(pred: pd.DataFrame, sample: dict, thresholds, error: float,
                     age_range=None, bootstrap: int = 1000, seed: int = 0,
                     band: float | None = None) -> dict:
    """How the calibrated decisions fare on these predictions, per threshold: the cut, then
    against the labels (and the rendered ages when known) the false-over rate with its 95%
    interval (bootstrap over people), the false-under rate, the share uncertain, NIST's
    Challenge-(T+7) rate, and per band of true age around the threshold (decisions.age_bands:
    at 18, under 13, 13-15, 16-17 and 18-19, 20-22, 23+) the wrong-side rate with its
    interval and the share decided; plus a sweep of the false-over rate over
    SWEEP_THRESHOLDS. With `band` (--decision_band), the cuts are calibrated on the faces
    next to each threshold, and the every-face cut's band rates are given beside them
    (`bands_unbanded`) for the same faces.

    sample: the run's decisions.json (validation pairs): nothing of these predictions is
    used to calibrate.
    """
    p = pred["predicted_age"].to_numpy(float)
    if age_range:  # as served: ages within the training ages
        p = np.clip(p, *age_range)
    ids = pred["identity"].to_numpy() if "identity" in pred else None
    truths = [("labels", pred["true_age"].to_numpy(float))]
    if "rendered_age" in pred:
        truths.append(("rendered", pred["rendered_age"].to_numpy(float)))
    out = {"error": error, "method": decisions.METHOD, "band": band, "thresholds": {},
           "sweep": {}}
    for threshold in list(thresholds) + [t for t in SWEEP_THRESHOLDS if t not in thresholds]:
        cut = decisions.calibrate(sample, threshold, error,
                                  band if threshold in thresholds else None)
        calls = decisions.decide(p, cut)
        codes = np.array([_CALL_CODE[c] for c in calls])
        if threshold not in thresholds:
            out["sweep"][f"{threshold:g}"] = {
                name: decisions.rates(t, calls, threshold)["false_over"] for name, t in truths}
            out["sweep"][f"{threshold:g}"]["uncertain"] = float((codes == 0).mean())
            continue
        entry = {"cut": cut.summary()}
        for name, t in truths:
            r = decisions.rates(t, calls, threshold)
            r["challenge"] = decisions.challenge_rate(t, p, threshold)
            if bootstrap and r["n_under"]:
                r["false_over_ci95"] = metrics.bootstrap_ci(t, codes, _false_over(threshold),
                                                            bootstrap, seed, groups=ids)
            r["bands"] = _band_metrics(t, calls, codes, threshold, ids, bootstrap, seed)
            if band is not None:
                every = decisions.decide(p, decisions.calibrate(sample, threshold, error))
                r["bands_unbanded"] = _band_metrics(
                    t, every, np.array([_CALL_CODE[c] for c in every]), threshold, ids,
                    bootstrap, seed)
            entry[name] = r
        out["thresholds"][f"{threshold:g}"] = entry
        out["sweep"][f"{threshold:g}"] = {name: entry[name]["false_over"] for name, _ in truths}
        out["sweep"][f"{threshold:g}"]["uncertain"] = entry["labels"]["uncertain"]
    out["sweep"] = dict(sorted(out["sweep"].items(), key=lambda kv: float(kv[0])))
    return out


def compute_metrics(pred: pd.DataFrame, bootstrap: int = 1000, seed: int = 0) -> dict:
    """The study's loss (MAE in label units), MAE, RMSE, PLCC, SROCC, CS@5, bootstrap CIs."""
    t, p = pred["true_age"].to_numpy(float), pred["predicted_age"].to_numpy(float)
    m = metrics.regression_metrics(t, p)
    m["loss"] = metrics.mae(labels.to_label(t), labels.to_label(p))
    m["images"] = len(pred)
    m["by_decade"] = metrics.error_by_decade(t, p)
    has_ids = "identity" in pred
    if has_ids:
        m["identities"] = int(pred["identity"].nunique())
    if bootstrap:
        # Resample people, not photos: photos of one person are not independent (IMDB has
        # many per celebrity). The image-level intervals are kept for comparison.
        groups = pred["identity"].to_numpy() if has_ids else None
        for key, fn in (("plcc", metrics.plcc), ("srocc", metrics.srocc),
                        ("mae_years", metrics.mae)):
            m[f"{key}_ci95"] = metrics.bootstrap_ci(t, p, fn, bootstrap, seed, groups=groups)
            m[f"{key}_ci95_images"] = metrics.bootstrap_ci(t, p, fn, bootstrap, seed)
        m["ci_resampling"] = "identities" if has_ids else "images"
    if "rendered_age" in pred and pred["predicted_age"].std() > 0:
        groups = pred["identity"].to_numpy() if has_ids else None
        m["rendered"] = _rendered_metrics(pred, bootstrap, seed, groups)
    elif "rendered_age" in pred:
        m["rendered"] = {"plcc": float("nan"),
                         "mae_years": metrics.mae(pred["rendered_age"], pred["predicted_age"]),
                         "by_decade": metrics.error_by_decade(pred["rendered_age"],
                                                                pred["predicted_age"])}
    return m


GALLERY_SIDE = 160  # pixels of a face cropped from a full photo for a gallery


def _load_faces(images_dir: str, rows: pd.DataFrame, crop=None):
    """The images of rows; with `crop` = (pipeline config, manifest) of full photos, the faces
    as the model saw them (the manifest gives their boxes)."""
    if crop is not None and crop[0].crop_faces:
        pcfg, manifest = crop
        boxed = manifest.set_index("path").loc[rows["path"]].reset_index()
        return list(pipeline.map_images(None, boxed, images_dir, pcfg, GALLERY_SIDE, "gallery faces"))
    return [pipeline.read_image(os.path.join(images_dir, p)) for p in rows["path"]]


def write_figures(pred: pd.DataFrame, images_dir: str, out_dir: str, name: str,
                  gallery_max: int = 24, seed: int = 0, crop=None) -> dict[str, str]:
    """Figures 4-8 and MAE per decade; returns {figure: path}. Galleries with no face to show
    are skipped (and say so in the log). crop: see _load_faces."""
    figs = {}
    figs["scatter"] = os.path.join(out_dir, "figure4_scatter.png")
    plots.plot_scatter(pred["true_age"], pred["predicted_age"], figs["scatter"],
                       f"{name}: predicted vs true age (n={len(pred)})")
    figs["mae_by_decade"] = os.path.join(out_dir, "mae_by_decade.png")
    plots.plot_mae_by_decade(pred["true_age"], pred["predicted_age"], figs["mae_by_decade"],
                             f"{name}: MAE per decade of true age")
    worst = pred[pred["abs_error"] >= GALLERY_MIN_ERROR].sort_values("abs_error", ascending=False)
    if len(worst) and gallery_max:
        shown = worst.head(gallery_max)
        figs["worst"] = os.path.join(out_dir, "figure5_errors_over_40.png")
        plots.plot_face_grid(
            _load_faces(images_dir, shown, crop),
            [f"true {t:.0f} / pred {p:.0f}" for t, p in zip(shown["true_age"], shown["predicted_age"])],
            figs["worst"], f"{name}: errors of {GALLERY_MIN_ERROR:.0f}+ years "
                           f"({len(shown)} of {len(worst)} shown, worst first)", cols=6)
    else:
        logging.info("no test face with an error of %.0f+ years (or --gallery_max=0): Figure 5 "
                     "skipped", GALLERY_MIN_ERROR)
    lo, hi = MID_ERROR_RANGE
    mid = pred[(pred["abs_error"] >= lo) & (pred["abs_error"] <= hi)]
    if len(mid):
        shown = mid.sample(n=min(8, len(mid)), random_state=seed)
        figs["mid"] = os.path.join(out_dir, "figure7_errors_15_20.png")
        plots.plot_face_grid(
            _load_faces(images_dir, shown, crop),
            [f"true {t:.0f} / pred {p:.0f}" for t, p in zip(shown["true_age"], shown["predicted_age"])],
            figs["mid"], f"{name}: random faces with errors of {lo:.0f}-{hi:.0f} years", cols=4)
    else:
        logging.info("no face with an error of %.0f-%.0f years: Figure 7 skipped", lo, hi)
    return figs


def summary(m: dict) -> str:
    """The headline metrics of evaluate() as JSON (what age-tf-evaluate prints)."""
    keys = ("loss", "mae_years", "rmse_years", "plcc", "srocc", "cs5", "plcc_ci95", "srocc_ci95",
            "mae_years_ci95")
    out = {k: m[k] for k in keys if k in m}
    if "intervals" in m:
        out["interval_coverage"] = {k: m["intervals"][k] for k in ("calibrated_coverage",
                                                                     "coverage", "mean_width")}
    return json.dumps(out, indent=2) + f"\nwrote {m.get('out_dir', m['model_dir'] + '/eval')}/"


def check_data(run: RunDir, data_dir: str, split: str, other_data: bool = False) -> DataMatch:
    """The split to score must be the run's own, or (with other_data) is said to be another.

    Raises:
      DataError: another folder without --other_data (how many images the run saw there).
    """
    match = match_data(run, data_dir, split)
    if match.own:
        return match
    if not other_data:
        raise DataError(f"--data_dir={data_dir}: {match.note}. Scores there would not be this "
                        "run's test figures; pass --other_data to evaluate on another dataset")
    if match.seen:
        logging.warning("WARNING: %d of the %d %s images in %s were this run's training or "
                        "validation images: its scores there are inflated", match.seen,
                        match.images, split, data_dir)
    elif match.seen is None:  # its training data gone: whether it saw these cannot be told
        logging.warning("%s: %s", data_dir, match.note)
    else:  # asked for (--other_data), and none of it seen in training: nothing to warn of
        logging.info("%s: %s", data_dir, match.note)
    return match


def evaluate(cfg: EvaluateConfig) -> dict:
    """Writes <model_dir>/eval/: predictions.csv, metrics.json and the figures.

    With `cfg.ground_truth` (a synthetic set's ground_truth.csv), metrics also hold
    "rendered": PLCC and MAE against the ages the faces were rendered at.

    Returns:
      The metrics (with the figure paths under 'figures').
    """
    run = load_run(cfg.model_dir)
    fileio.check_writable_dir(run.dir.eval, "model_dir", cfg.model_dir)  # before the work
    match = check_data(run.dir, cfg.data_dir, cfg.split, cfg.other_data)
    manifest, images_dir = prepared.load_manifest(cfg.data_dir, cfg.split)
    pred = predict(run, manifest, images_dir, cfg.data_dir)
    if cfg.ground_truth:
        pred = attach_rendered(pred, cfg.ground_truth)
    out_dir = run.dir.eval if match.own else run.dir.eval_on(cfg.data_dir)
    os.makedirs(out_dir, exist_ok=True)
    predictions_csv = os.path.join(out_dir, os.path.basename(run.dir.eval_predictions))
    with fileio.atomic_path(predictions_csv) as tmp:
        pred.to_csv(tmp, index=False)
    result = compute_metrics(pred, cfg.bootstrap, cfg.seed)
    # Groups from the manifest (the predictions file keeps its columns).
    result["by_group"] = errors_by_group(
        pred.join(manifest[[c for c in GROUP_COLUMNS if c in manifest]]), cfg.bootstrap, cfg.seed)
    sample = run.dir.read_decisions()
    if sample is not None:
        result["decisions"] = decision_metrics(
            pred, sample, decisions.parse_thresholds(cfg.thresholds), cfg.decision_error,
            (run.calibration or {}).get("age_range"), cfg.bootstrap, cfg.seed,
            cfg.decision_band)
    if "age_low" in pred:
        result["intervals"] = interval_metrics(pred, run.calibration)
    elif "dist_low" in pred:
        result["distribution_intervals"] = distribution_interval_metrics(pred)
    name, split = run.name, cfg.split
    result["figures"] = write_figures(pred, images_dir, out_dir, name, cfg.gallery_max, cfg.seed,
                                      (run.pipeline_config(data_dir=cfg.data_dir), manifest))
    result.update({"split": split, "model_dir": os.path.abspath(cfg.model_dir),
                   "data_dir": os.path.abspath(cfg.data_dir), "own_data": match.own,
                   "seen_in_training": match.seen, "out_dir": out_dir,
                   "backbone": run.config["model"]["backbone"], "tune": run.config["model"]["tune"],
                   "head": run.config["model"].get("head", "regression")})
    fileio.atomic_write_text(os.path.join(out_dir, os.path.basename(run.dir.eval_metrics)),
                             json.dumps(result, indent=2))
    if match.own and split == "test" and os.path.isdir(run.dir.export):
        # The served model's card carries its test figures from now on.
        card.write(card.build(run.dir, run.calibration), run.dir.card)
    logging.info("%s on %s: MAE %.2f years, PLCC %.4f, SROCC %.4f", name, split,
                 result["mae_years"], result["plcc"], result["srocc"])
    return result
