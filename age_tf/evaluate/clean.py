"""Label cleaning: a new prepared-data folder in which the audit's top suspects of the
training and validation splits are dropped or relabelled. The test split is never touched.

The suspects are judged as the audit judges them (features of a run's backbone, ridge heads
cross-fitted by identity), but fitted on the training and validation images only: no test
label helps decide which training label is wrong.

A label is suspect when its held-out residual is more than `sigmas` local robust standard
deviations from zero (audit.robust_heldout: 1.4826 x the median absolute residual among
images predicted at a similar age): the threshold follows how well the model predicts on
that data and at that age, so it carries over from the synthetic demo to IMDB.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from age_tf import fileio, metrics
from age_tf.data import prepare, prepared
from age_tf.evaluate import audit, ground_truth
from age_tf.evaluate.evaluate_config import ACTIONS, CleanConfig  # noqa: F401  (its flags)
from age_tf.train.run_dir import RunDir

CLEANED_SPLITS = ("train", "val")
CLEANED_FILES = tuple(f"{split}.csv" for split in CLEANED_SPLITS)


def clean(cfg: CleanConfig) -> dict:
    """Writes the cleaned folder: train.csv and val.csv changed, test.csv and the rest copied
    byte for byte, changes.csv listing every change, clean.json the summary.

    Returns:
      The summary (also in <out_dir>/clean.json).

    Raises:
      DataError: out_dir already holds prepared data and overwrite is False.
    """
    cfg.validate()
    prepare.check_output_dir(cfg.out_dir, cfg.overwrite)
    suspects, _, _ = audit.heldout_suspects(cfg.model_dir, cfg.data_dir, CLEANED_SPLITS,
                                            cfg.folds, cfg.seed, cfg.feature_store)
    flagged = suspects[suspects["suspicion"] > cfg.sigmas].copy()  # in local deviations
    flagged["action"] = cfg.action
    flagged["new_age"] = (np.clip(np.round(flagged["heldout_prediction"]), 0, 100).astype(int)
                          if cfg.action == "relabel" else -1)
    prepare.copy_prepared(cfg.data_dir, cfg.out_dir, skip=CLEANED_FILES)  # test.csv untouched
    counts = {}
    for split in CLEANED_SPLITS:
        m = pd.read_csv(os.path.join(cfg.data_dir, f"{split}.csv"))
        mine = flagged[flagged["split"] == split].set_index("row")
        hit = m["row"].isin(mine.index)
        if cfg.action == "drop":
            m = m[~hit]
        else:
            m.loc[hit, "age"] = mine.loc[m.loc[hit, "row"], "new_age"].to_numpy()
        counts[split] = {"images": int(len(m)), "changed": int(hit.sum())}
        with fileio.atomic_path(os.path.join(cfg.out_dir, f"{split}.csv")) as tmp:
            m.to_csv(tmp, index=False)
    cols = ["path", "split", "row", "identity", "age", "heldout_prediction", "residual", "action",
            "new_age"]
    with fileio.atomic_path(os.path.join(cfg.out_dir, "changes.csv")) as tmp:
        flagged[cols].rename(columns={"age": "label"}).to_csv(tmp, index=False)
    limits = cfg.sigmas * suspects["residual_scale"]
    summary = {"action": cfg.action, "sigmas": cfg.sigmas,
               "threshold_years": [float(limits.min()), float(limits.max())],
               "heldout_mae_years": float(suspects["residual"].abs().mean()),
               "judged_images": int(len(suspects)), "changed": int(len(flagged)),
               "splits": counts, "model_dir": os.path.abspath(cfg.model_dir),
               "source_data_dir": os.path.abspath(cfg.data_dir)}
    fileio.atomic_write_text(os.path.join(cfg.out_dir, "clean.json"), json.dumps(summary, indent=2))
    return summary


def oracle_labels(data_dir: str, truth_csv: str, out_dir: str) -> None:
    """A prepared folder whose train/val labels are a synthetic set's rendered ages (the
    ceiling that cleaning is measured against); test.csv and the rest copied unchanged."""
    if os.path.abspath(out_dir) == os.path.abspath(data_dir):
        raise ValueError("oracle labels need their own folder")
    manifests = {split: prepared.read_manifest(os.path.join(data_dir, f"{split}.csv"))
                 for split in CLEANED_SPLITS}
    truths = {split: ground_truth.for_rows(truth_csv, m) for split, m in manifests.items()}
    prepare.copy_prepared(data_dir, out_dir, skip=CLEANED_FILES)
    for split, m in manifests.items():
        m["age"] = truths[split]["rendered_age"].to_numpy()
        with fileio.atomic_path(os.path.join(out_dir, f"{split}.csv")) as tmp:
            m.to_csv(tmp, index=False)
    # What the model card reports as these labels' source.
    fileio.atomic_write_text(os.path.join(out_dir, "oracle.json"),
                             json.dumps({"labels": "rendered ages", "truth_csv": truth_csv}))


def gap_shares(rendered: np.ndarray, noisy: np.ndarray, cleaned: np.ndarray,
               oracle: np.ndarray) -> dict:
    """Share of the noisy-to-oracle gap that cleaning recovers, for MAE and PLCC.

    1.0: cleaning does as well as training on the true ages; 0: no better than the labels as
    given; negative: worse.
    """
    mae = [metrics.mae(rendered, p) for p in (noisy, cleaned, oracle)]
    r = [metrics.plcc(rendered, p) for p in (noisy, cleaned, oracle)]
    div = lambda a, b: a / b if b != 0 else float("nan")  # noqa: E731
    return {"mae": div(mae[0] - mae[1], mae[0] - mae[2]), "plcc": div(r[1] - r[0], r[2] - r[0])}


def table3(runs: dict[str, str], bootstrap: int = 1000, seed: int = 0) -> dict:
    """Table 3 from evaluated runs scored against rendered ages.

    Args:
      runs: {"noisy": run dir, "oracle": run dir, <cleaning name>: run dir, ...}, each with
        eval/predictions.csv written by evaluate(..., ground_truth=...) on the same split.

    Returns:
      {"rows": {name: {mae_years, plcc, *_ci95}}, "shares": {cleaning name: {mae, plcc,
       mae_ci95, plcc_ci95}}}; intervals resample test people (paired across runs).
    """
    preds = {k: pd.read_csv(RunDir(d).eval_predictions) for k, d in runs.items()}
    base = preds["noisy"]
    for k, p in preds.items():
        if p["path"].tolist() != base["path"].tolist() or "rendered_age" not in p:
            raise ValueError(f"{runs[k]}: its test predictions are not the same images as the "
                             "others', or were not scored against rendered ages")
    t = base["rendered_age"].to_numpy(float)
    groups = base["identity"].to_numpy()
    rows = {}
    for k, p in preds.items():
        y = p["predicted_age"].to_numpy(float)
        rows[k] = {"mae_years": metrics.mae(t, y), "plcc": metrics.plcc(t, y),
                   "mae_years_ci95": metrics.bootstrap_ci(t, y, metrics.mae, bootstrap, seed, groups=groups),
                   "plcc_ci95": metrics.bootstrap_ci(t, y, metrics.plcc, bootstrap, seed, groups=groups)}
    shares = {}
    for k in runs:
        if k in ("noisy", "oracle"):
            continue
        stack = np.stack([preds[n]["predicted_age"].to_numpy(float) for n in ("noisy", k, "oracle")], 1)
        s = gap_shares(t, *stack.T)
        for key in ("mae", "plcc"):
            s[f"{key}_ci95"] = metrics.bootstrap_ci(
                t, stack, lambda a, b, key=key: gap_shares(a, *b.T)[key], bootstrap, seed,
                groups=groups)
        shares[k] = s
    return {"rows": rows, "shares": shares, "test_images": len(t),
            "test_people": int(len(np.unique(groups)))}


def table3_markdown(result: dict, labels: dict[str, str]) -> str:
    """Table 3 as markdown: one row per training-label variant, then the recovered shares."""
    ci = lambda v: f" [{v[0]:.3f}, {v[1]:.3f}]"  # noqa: E731
    lines = ["| trained on | test MAE vs rendered age [95% CI] | test PLCC vs rendered age [95% CI] |",
             "|---|---|---|"]
    for k, r in result["rows"].items():
        lines.append(f"| {labels.get(k, k)} | {r['mae_years']:.2f}{ci(r['mae_years_ci95'])} "
                     f"| {r['plcc']:.4f}{ci(r['plcc_ci95'])} |")
    lines += ["", "| cleaning | share of the noisy-to-oracle MAE gap recovered [95% CI] "
              "| share of the PLCC gap recovered [95% CI] |", "|---|---|---|"]
    for k, s in result["shares"].items():
        lines.append(f"| {labels.get(k, k)} | {s['mae']:.2f}{ci(s['mae_ci95'])} "
                     f"| {s['plcc']:.2f}{ci(s['plcc_ci95'])} |")
    return "\n".join(lines) + "\n"
