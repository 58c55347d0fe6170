"""report.md: the study's Table 2 and Table 1, and links to every figure."""

from __future__ import annotations

import json
import os

from age_tf import decisions, fileio, metrics, plots
from age_tf.data import prepared
from age_tf.errors import DataError
from age_tf.evaluate import baselines, model_cost
from age_tf.evaluate.evaluate_config import ReportConfig  # noqa: F401  (its flags)
from age_tf.train.run_dir import RunDir, match_data

TUNE_LABEL = {"head": "new head only", "full": "all layers"}


def table2_rows(run_dirs: list[str]) -> list[dict]:
    """One row per run, from <run>/eval/metrics.json.

    Raises:
      FileNotFoundError: a run has not been evaluated (names the command to run).
    """
    rows = []
    for run in run_dirs:
        path = RunDir(run).eval_metrics
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: run age-tf-evaluate --model_dir={run} first")
        with open(path) as f:
            m = json.load(f)
        rows.append({"run": os.path.basename(os.path.normpath(run)), "dir": run, **m})
    return rows


def _num(value, fmt: str) -> str:
    return "—" if value is None or value != value else format(value, fmt)  # NaN: undefined


def table2_markdown(rows: list[dict], baselines: list[dict] | None = None) -> str:
    """Table 2: one row per evaluated run, then the baseline rows (see baselines.py)."""
    everything = rows + list(baselines or [])
    # Synthetic data: also against the rendered ages, i.e. without the planted label noise.
    rendered = all("rendered" in r for r in everything) and everything
    # A head column only where runs differ from the study's regression head (Table 2 of the
    # study's runs keeps the study's columns).
    heads = any(r.get("head", "regression") != "regression" for r in rows)
    head = ("| network | tuned |" + (" head |" if heads else "")
            + " test loss (MAE / 100) | MAE (years) | PLCC [95% CI] | SROCC [95% CI] "
            "| CS@5 | test images |" + (" rendered age: MAE | rendered age: PLCC [95% CI] |"
                                        if rendered else "")
            + "\n|---|---|---|---|---|---|---|---|" + ("---|" if heads else "")
            + ("---|---|" if rendered else "") + "\n")
    lines = []
    for r in everything:
        ci = lambda m, k: (f" [{m[k][0]:.3f}, {m[k][1]:.3f}]"  # noqa: E731
                           if k in m and m[k][0] == m[k][0] else "")
        line = (f"| {r['backbone']} | {TUNE_LABEL.get(r['tune'], r['tune'])} | "
                + (f"{r.get('head', '—')} | " if heads else "") + f"{r['loss']:.4f} "
                f"| {r['mae_years']:.2f} | {_num(r['plcc'], '.4f')}{ci(r, 'plcc_ci95')} "
                f"| {_num(r['srocc'], '.4f')}{ci(r, 'srocc_ci95')} | {r['cs5']:.3f} | {r['images']} |")
        if rendered:
            g = r["rendered"]
            line += f" {g['mae_years']:.2f} | {_num(g['plcc'], '.4f')}{ci(g, 'plcc_ci95')} |"
        lines.append(line)
    ids = [r.get("identities") for r in rows if r.get("ci_resampling") == "identities"]
    people = f"{min(ids)}" if ids and min(ids) == max(ids) else f"{min(ids, default=0)}-{max(ids, default=0)}"
    note = (f"\n95% intervals: bootstrap over people ({people} test identities), not "
            "photos; photos of one person are not independent.\n" if ids else "")
    if baselines:
        note += ("Baselines, same splits: the training median for every face (no correlation "
                 "defined), and a ridge regression on an 8x8 grey thumbnail and 4x4 blocks of "
                 "mean colour. A CNN row that does not beat them has learned nothing useful.\n")
    if rendered:
        note += ("Rendered age: the same predictions scored against the ages the synthetic faces "
                 "were drawn at, not their labels (some labels are planted errors).\n")
    return head + "\n".join(lines) + "\n" + note


def _decades(rows: list[dict]) -> list[str]:
    seen = {d for r in rows for d in r.get("by_decade", {})}
    return [d for d in (metrics.decade_label(x) for x in metrics.DECADES) if d in seen]


def _label(r: dict) -> str:
    head = r.get("head", "regression")
    return (f"{r['backbone']}, {TUNE_LABEL.get(r['tune'], r['tune'])}"
            + ("" if head == "regression" else f", {head}"))


def error_by_decade_markdown(rows: list[dict], baselines: list[dict] | None = None,
                             key: str | None = None) -> str:
    """MAE / mean signed error (bias: + is too old) per decade of true age, one row per run
    and baseline; with key="rendered", against the rendered ages."""
    everything = [r.get(key, {}) | {k: r[k] for k in ("backbone", "tune", "head") if k in r}
                  if key else r
                  for r in rows + list(baselines or [])]
    decades = _decades(everything)
    if not decades:
        return ""
    counts = {d: next(r["by_decade"][d]["images"] for r in everything if d in r.get("by_decade", {}))
              for d in decades}
    lines = ["| run | " + " | ".join(f"{d} (n={counts[d]})" for d in decades) + " |",
             "|---|" + "---|" * len(decades)]
    for r in everything:
        cells = [f"{r['by_decade'][d]['mae_years']:.1f} / {r['by_decade'][d]['bias_years']:+.1f}"
                 if d in r.get("by_decade", {}) else "—" for d in decades]
        lines.append(f"| {_label(r)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


INTERVAL_METHODS = {
    "normalized": "a width per face, the residual normalized by a scale learned on the "
                  "training split from the backbone's features",
    "binned": "one width per bin of predicted age",
}


def intervals_markdown(rows: list[dict]) -> str:
    """Test coverage of each run's served intervals, overall and per decade of true age (each
    cell with its face count: a share of few faces is noisy), and their mean width."""
    rows = [r for r in rows if "intervals" in r]
    if not rows:
        return ""
    decades = [d for d in _decades([{"by_decade": r["intervals"]["by_decade"]} for r in rows])]
    lines = ["| run | against | coverage | mean width (years) | "
             + " | ".join(decades) + " |", "|---|---|---|---|" + "---|" * len(decades)]
    for r in rows:
        own = r["intervals"].get("distribution") or {}
        for against, rep in (("labels", r["intervals"]),
                             ("rendered ages", r["intervals"].get("rendered")),
                             ("labels, the head's own", own or None),
                             ("rendered ages, the head's own", own.get("rendered"))):
            if not rep:
                continue
            cells = [f"{rep['by_decade'][d]['coverage']:.2f} (n={rep['by_decade'][d]['images']})"
                     if d in rep["by_decade"] else "—" for d in decades]
            lines.append(f"| {_label(r)} | {against} | {rep['coverage']:.3f} | "
                         f"{rep['mean_width']:.1f} | " + " | ".join(cells) + " |")
    coverage = rows[0]["intervals"]["calibrated_coverage"]
    methods = {"normalized" if r["intervals"].get("method") == "normalized" else "binned"
               for r in rows}
    how = " and ".join(INTERVAL_METHODS[m] for m in sorted(methods))
    return ("\n".join(lines) + f"\n\nIntervals served with every prediction, calibrated at "
            f"{coverage:.0%} on the validation split (split conformal: {how}); the test split "
            "never enters the calibration."
            + (" \"The head's own\": a distribution head's central interval of its predicted "
               "age distribution at the same level, uncalibrated, for comparison."
               if any("distribution" in r["intervals"] for r in rows) else "") + "\n")


def _link(path: str, base: str, title: str) -> str:
    return f"![{title}]({os.path.relpath(path, base)})"


def _threshold_table(rows: list | None) -> str:
    """What age-tf-clean's --sigmas trades on the train + val rows, against the truth."""
    if not rows:
        return ""
    lines = ["\n\nage-tf-clean's rule (suspicion > --sigmas local deviations) on the train + "
             "val images, against the planted truth:\n\n| --sigmas | flagged | precision | "
             "recall |\n|---|---|---|---|"]
    lines += [f"| {r['sigmas']:g} | {r['flagged']} | {r['precision']:.2f} | {r['recall']:.2f} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def _by_age_sections(rows: list[dict], baseline_results: dict | None, base: str) -> list[str]:
    """Error by age (table and figure) and the intervals' coverage, for the report."""
    base_rows = baselines.table_rows(baseline_results) if baseline_results else []
    table = error_by_decade_markdown(rows, base_rows)
    if not table:
        return []
    figure = os.path.join(base, "error_by_decade.png")
    plots.plot_error_by_decade({_label(r): r["by_decade"] for r in rows + base_rows}, figure)
    parts = ["\n## Error by age\n\nMAE / mean signed error (bias; + means too old) in years, "
             "per decade of the test label:\n\n", table]
    rendered = error_by_decade_markdown([r for r in rows if "rendered" in r],
                                        [b for b in base_rows if "rendered" in b], "rendered")
    if rendered:
        parts += ["\nThe same against the rendered ages:\n\n", rendered]
    parts += ["\n", _link(figure, base, "error by age"), "\n"]
    coverage = intervals_markdown(rows)
    if coverage:
        parts += ["\n## Age intervals\n\n", coverage]
        selective = {_label(r): r["intervals"]["risk_coverage"] for r in rows
                     if "risk_coverage" in r.get("intervals", {})}
        if selective:
            figure = os.path.join(base, "risk_coverage.png")
            plots.plot_risk_coverage(selective, figure)
            parts += ["\nAnswering only the faces with the narrowest intervals (selective "
                      "prediction): MAE of the answered faces against their share; the "
                      "baseline is answering every face (dotted).\n\n",
                      _link(figure, base, "risk against coverage"), "\n"]
    decided = decisions_markdown(rows)
    if decided:
        figure = os.path.join(base, "false_over.png")
        plots.plot_false_over({_label(r): r["decisions"]["sweep"] for r in rows
                               if "decisions" in r}, _decision_error(rows), figure)
        parts += ["\n## Decisions at age thresholds\n\n", decided, "\n",
                  _link(figure, base, "false-over rate against the threshold"), "\n"]
    groups = groups_markdown(rows)
    if groups:
        parts += ["\n## Error by group\n\n", groups]
    return parts


def _decision_error(rows: list[dict]) -> float:
    return next(r["decisions"]["error"] for r in rows if "decisions" in r)


def decisions_markdown(rows: list[dict]) -> str:
    """Per run and threshold: the calibrated cuts, then on the test split the false-over rate
    [95% CI] against the labels (and the rendered ages), the false-under rate, the share
    uncertain and the Challenge-(T+7) rate."""
    rows = [r for r in rows if r.get("decisions", {}).get("thresholds")]
    if not rows:
        return ""
    lines = ["| run | T | over above / under below | faces under T | false-over [95% CI] | "
             "false-over, rendered ages | false-under | uncertain | Challenge-(T+7) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for t, e in r["decisions"]["thresholds"].items():
            lab, ren = e["labels"], e.get("rendered")
            ci = lab.get("false_over_ci95")
            cut = e["cut"]
            lines.append(
                f"| {_label(r)} | {t} | {_num(cut['over_above'], '.1f')} / "
                f"{_num(cut['under_below'], '.1f')} | {lab['n_under']} | "
                f"{_num(lab['false_over'], '.3f')}"
                + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] == ci[0] else "")
                + f" | {_num(ren['false_over'], '.3f') if ren else '—'} | "
                f"{_num(lab['false_under'], '.3f')} | {lab['uncertain']:.2f} | "
                f"{_num(lab['challenge'], '.3f')} |")
    error = _decision_error(rows)
    bands = decision_bands_markdown(rows)
    return ("\n".join(lines) + f"\n\nEach face is called over T, under T or uncertain by cuts "
            f"calibrated on the validation split to err at most {error:.0%} each way "
            "(label-conditional split conformal; `age-tf-predict --thresholds`); the test split "
            "never enters them. False-over: faces under T called over (the rate promised); "
            "Challenge-(T+7): faces under T whose age is estimated at T + 7 or more (NIST's "
            "policy metric, from the point estimate). Baseline: a constant (median) "
            "prediction decides no face (every face uncertain).\n" + bands)


def decision_bands_markdown(rows: list[dict]) -> str:
    """Per run and threshold, the wrong-side rate [95% CI] and the share decided in each band
    of true age around T (the rendered ages where known, else the labels): a rate promised
    for everyone under T can hide the faces next to it."""
    lines = []
    for r in rows:
        for t, e in r["decisions"]["thresholds"].items():
            against = "rendered ages" if e.get("rendered") else "labels"
            bands = (e.get("rendered") or e["labels"]).get("bands")
            if not bands:
                continue
            if not lines:
                a, b = (f"{v:g}" for v in decisions.BAND_EDGES)
                names = [f"under T-{b}", f"T-{b} to T-{int(a) + 1}", f"T-{a} to T-1",
                         f"T to T+{int(a) - 1}", f"T+{a} to T+{int(b) - 1}", f"T+{b} on"]
                lines = ["| run | T | against | " + " | ".join(names) + " |",
                         "|---|---|---|" + "---|" * len(names)]
            cells = []
            for b in bands.values():
                ci = b.get("wrong_ci95")
                cells.append("—" if not b["faces"] else
                             f"{b['wrong']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]"
                                                    if ci and ci[0] == ci[0] else "")
                             + f", {b['decided']:.0%} decided (n={b['faces']})")
            lines.append(f"| {_label(r)} | {t} | {against} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    return ("\nBy band of true age around T (at 18: under 13, 13-15, 16-17, 18-19, 20-22, "
            "23 on): under T the share called over, from T on the share called under, each with "
            "its 95% interval (bootstrap over people), and the share decided at all.\n\n"
            + "\n".join(lines) + "\n")


def groups_markdown(rows: list[dict]) -> str:
    """Per run and group column (gender, race): MAE / bias / CS@5 (and coverage) per group,
    and the largest MAE gap with its 95% interval (bootstrap over people)."""
    lines = []
    for r in rows:
        for column, rep in (r.get("by_group") or {}).items():
            for against, g in (("labels", rep), ("rendered ages", rep.get("rendered"))):
                if not g:
                    continue
                cells = "; ".join(
                    f"{name} (n={v['images']}): {v['mae_years']:.2f} / {v['bias_years']:+.2f} / "
                    f"{v['cs5']:.2f}" + (f" / {v['coverage']:.2f}" if "coverage" in v else "")
                    for name, v in g["groups"].items())
                gap = g.get("gap")
                gap_text = (f"{gap['between'][0]} - {gap['between'][1]}: {gap['mae_years']:+.2f}"
                            + (f" [{gap['ci95'][0]:+.2f}, {gap['ci95'][1]:+.2f}]"
                               if "ci95" in gap else "") if gap else "—")
                lines.append(f"| {_label(r)} | {column} | {against} | {cells} | {gap_text} |")
    if not lines:
        return ""
    return ("| run | group | against | MAE / bias / CS@5 (/ interval coverage) per group | "
            "largest MAE gap [95% CI] |\n|---|---|---|---|---|\n" + "\n".join(lines)
            + "\n\nGroups as the release records them (gender everywhere, race where given); "
            "the gap's interval resamples people. A gap whose interval holds 0 is not shown "
            "to exist.\n")


def write_report(run_dirs: list[str], out_path: str, data_dir: str | None = None,
                 extra_figures: dict[str, str] | None = None, table1: str | None = None,
                 notes: str = "", baseline_results: dict | None = None,
                 sections: list[str] | None = None) -> str:
    """Writes report.md and returns its text.

    Args:
      run_dirs: evaluated run directories (Table 2 rows, in this order).
      out_path: the report file.
      data_dir: prepared data, for the age-distribution figure and split sizes.
      extra_figures: more figures to link, {title: path}.
      table1: Table 1 markdown; computed from the runs' backbones when None.
      notes: a paragraph placed under the title (e.g. what data this is).
      baseline_results: baselines.compute() output, added to Table 2.
      sections: more markdown sections, placed after Table 1 (e.g. Table 3).
    """
    base = os.path.dirname(os.path.abspath(out_path))
    rows = table2_rows(run_dirs)
    if data_dir:
        for r in rows:  # the Data section must describe the data Table 2 came from
            if not match_data(RunDir(r["dir"]), data_dir, "test").own:
                raise DataError(f"--data_dir={data_dir} is not the data {r['dir']} was trained "
                                f"and tested on ({r.get('data_dir') or 'see its config.json'}); "
                                "pass that folder, or leave --data_dir out")
    if table1 is None:
        backbones = sorted({r["backbone"] for r in rows})
        sizes = sorted({RunDir(r["dir"]).read_config()["model"]["image_size"] for r in rows})
        table1 = model_cost.model_cost_markdown(model_cost.model_cost(backbones, [None, *sizes]))
    parts = ["# Age regression by transfer learning: results\n\n", notes + "\n" if notes else "",
             "\n## Table 2: test results\n\n", table2_markdown(rows, baselines.table_rows(baseline_results) if baseline_results else None),
             "\nLoss is the MAE of age / 100, the units the study reports (its best: 0.047). "
             "Intervals: percentile bootstrap (see the note under the table).\n",
             *_by_age_sections(rows, baseline_results, base),
             "\n## Table 1: model size and cost\n\n", table1,
             "\nGMACs count multiply-accumulates, the quantity the study's \"GFLOPS\" column "
             "reports; FLOPs = 2 x MACs.\n", *(sections or [])]
    if data_dir:
        prep = prepared.PreparedDir(data_dir).report()
        sizes = ", ".join(f"{k} {v['images']:,}" for k, v in prep["splits"].items())
        stages = " → ".join(f"{s['stage']} {s['kept']:,}" for s in prep["stages"])
        parts += ["\n## Data\n\n", f"Splits: {sizes}.\n\nStages: {stages}.\n\n",
                  _link(os.path.join(data_dir, "age_distribution.png"), base, "age distribution"), "\n"]
    for title, path in (extra_figures or {}).items():
        parts += [f"\n### {title}\n\n", _link(path, base, title), "\n"]
    parts.append("\n## Figures per run\n")
    for r in rows:
        parts.append(f"\n### {r['backbone']}, {TUNE_LABEL.get(r['tune'], r['tune'])}\n\n")
        for key, path in r.get("figures", {}).items():
            parts += [_link(path, base, key), "\n"]
        audit_dir = RunDir(r["dir"]).audit
        audit_json = os.path.join(audit_dir, "audit.json")
        if os.path.exists(audit_json):
            with open(audit_json) as f:
                a = json.load(f)
            parts.append(f"\nLabel audit: held-out MAE {a['heldout_mae_years']:.2f} years, "
                         f"{a['near_duplicate_pairs']} near-duplicate pair(s) left "
                         f"({a['near_duplicate_pairs_across_splits']} across subsets"
                         + (f"; the {a['near_duplicate_pairs_listed']} most similar listed"
                            if a.get("near_duplicate_pairs_listed", a["near_duplicate_pairs"])
                            < a["near_duplicate_pairs"] else "") + ").")
            if "ground_truth" in a:
                p = ", ".join(f"P@{k} {v:.2f}" for k, v in a["ground_truth"]["precision_at_k"].items())
                parts.append(f" Against the synthetic ground truth (prevalence "
                             f"{a['ground_truth']['prevalence']:.3f}): {p}.")
                parts.append(_threshold_table(a["ground_truth"].get("cleaning_thresholds")))
            parts += ["\n\n", _link(os.path.join(audit_dir, "suspected_mislabels.png"), base,
                                    "suspected mislabels"), "\n"]
    text = "".join(parts)
    os.makedirs(base, exist_ok=True)
    fileio.atomic_write_text(out_path, text)
    return text
