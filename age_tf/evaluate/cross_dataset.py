"""Cross-dataset evaluation: every run on every prepared test split, as one table.

"Trained on / tested on": each run scored on its own test split and on the test split of
each other prepared folder (through age-tf-evaluate, so each cell is also an eval folder of
its run), beside the baselines fitted on the tested set's own training split. Intervals
are bootstrapped over identities where the tested set names them, else over images.
"""

from __future__ import annotations

import json
import os

from age_tf import fileio
from age_tf.data import prepared
from age_tf.evaluate import baselines, evaluation
from age_tf.evaluate.evaluate_config import CrossConfig  # noqa: F401  (its flags)
from age_tf.train.run_dir import match_data


def dataset_name(data_dir: str) -> str:
    """'<format> (<folder>)', as the folder's report records its release."""
    return prepared.PreparedDir(data_dir).name()


def cross_evaluate(cfg: CrossConfig) -> list[dict]:
    """One row per (run, tested folder) and per (baseline, tested folder)."""
    cfg.validate()
    rows = []
    for data_dir in cfg.data_dirs:
        tested = dataset_name(data_dir)
        for model_dir in cfg.model_dirs:
            run = evaluation.load_run(model_dir)
            own = match_data(run.dir, data_dir, "test").own
            m = evaluation.evaluate(evaluation.EvaluateConfig(
                model_dir=model_dir, data_dir=data_dir, split="test", bootstrap=cfg.bootstrap,
                seed=cfg.seed, other_data=not own, gallery_max=0))
            rows.append({**m, "model": run.name, "trained_on": dataset_name(run.config["data_dir"]),
                         "tested_on": tested})
        for key, m in baselines.compute(data_dir, cfg.bootstrap, cfg.seed).items():
            rows.append({**m, "model": baselines.NAMES[key], "trained_on": tested,
                         "tested_on": tested})
    return rows


def _ci(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci95")
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _num(v: float) -> str:
    return "-" if v != v else f"{v:.3f}"  # a constant prediction has no correlation


def _resampled(r: dict) -> str:
    """What the bootstrap drew: people, or images where the release names no one."""
    if "ci_resampling" not in r:
        return "-"
    return "images (no identities)" if r.get("identities") == r["images"] else r["ci_resampling"]


def _gaps(r: dict) -> str:
    """The largest MAE gap between groups of each group column the tested set names, with
    its interval (bootstrap over people): gender, race, skin tone."""
    out = []
    for column, g in (r.get("by_group") or {}).items():
        gap = g.get("gap")
        if gap:
            ci = gap.get("ci95")
            out.append(f"{column}: {gap['between'][0]} - {gap['between'][1]} "
                       f"{gap['mae_years']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
    return "; ".join(out) or "-"


def markdown(rows: list[dict]) -> str:
    """The table: one line per model and tested set, baselines beside the models."""
    lines = ["| tested on | model | trained on | MAE (years) | CS@5 | PLCC [95% CI] | "
             "SROCC [95% CI] | images | CI over | largest MAE gap between groups [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['tested_on']} | {r['model']} | {r['trained_on']} | {r['mae_years']:.2f} "
            f"| {r['cs5']:.3f} | {_num(r['plcc'])}{_ci(r, 'plcc')} | {_num(r['srocc'])}"
            f"{_ci(r, 'srocc')} | {r['images']} | {_resampled(r)} | {_gaps(r)} |")
    return "\n".join(lines) + "\n"


def write(cfg: CrossConfig) -> list[dict]:
    """Evaluates and writes cfg.out (Markdown) and its .json; returns the rows."""
    rows = cross_evaluate(cfg)
    fileio.atomic_write_text(cfg.out, markdown(rows))
    keep = ("tested_on", "model", "trained_on", "mae_years", "cs5", "plcc", "plcc_ci95", "srocc",
            "srocc_ci95", "images", "ci_resampling", "own_data", "seen_in_training", "by_group")
    fileio.atomic_write_text(os.path.splitext(cfg.out)[0] + ".json", json.dumps(
        [{k: r[k] for k in keep if k in r} for r in rows], indent=2, default=float))
    return rows
