"""The whole study in one call: data, the four training runs, evaluation, audit, report."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import pandas as pd
from absl import logging

from age_tf import fileio, metrics, progress, protocol
from age_tf.data import input_figures, prepare, prepared
from age_tf.evaluate import audit, baselines, clean, evaluation, ground_truth, report
from age_tf.protocol import Steps, evaluate_timed, train_once
from age_tf.protocol_config import (  # noqa: F401  (its flags)
    EXCLUDED,
    STUDY_RUNS,
    ExperimentConfig,
    configure_run,
    feature_store,
    run_config,
    run_configs,
)
from age_tf.synthetic import synth
from age_tf.train import standin_weights, train_config


def summary(result: dict) -> str:
    """Table 2 and where the report is (what age-tf-experiment prints at the end)."""
    return (f"\nTable 2 (test set)\n{result['table2']}\nreport: "
            f"{os.path.abspath(result['report'])}  ({result['seconds'] / 60:.1f} min)")


def _prepare_data(cfg: ExperimentConfig, raw: str, data: str, steps: Steps) -> str | None:
    """Synthesizes (unless real data is given) and prepares; skips what exists. Returns the
    ground-truth path for synthetic data."""
    truth = None
    if cfg.mat:
        mat, images_dir = cfg.mat, cfg.images_dir
        steps.step(f"using real metadata {mat}")
    else:
        mat, images_dir = os.path.join(raw, "imdb.mat"), os.path.join(raw, "imdb_crop")
        truth = os.path.join(raw, "ground_truth.csv")
        if os.path.exists(truth):
            steps.step(f"synthetic IMDB-WIKI already in {raw}")
        else:
            synth.generate(synth.SynthConfig(num_images=cfg.num_images, seed=cfg.train.seed), raw)
            steps.step(f"generated {cfg.num_images} synthetic rows in {raw}")
    if prepared.PreparedDir(data).exists():
        steps.step(f"prepared data already in {data}")
    else:
        r = prepare.prepare(prepare.PrepareConfig(mat=mat, images_dir=images_dir, out_dir=data,
                                                  sample_fraction=cfg.sample_fraction,
                                                  seed=cfg.train.seed))
        steps.step("prepared: " + ", ".join(f"{k} {v['images']}" for k, v in r["splits"].items()))
    return truth


def label_ceiling_note(data: str, truth: str) -> str:
    """How well a perfect model could score against the noisy test labels."""
    test, _ = prepared.load_manifest(data, "test")
    rendered = ground_truth.for_rows(truth, test)["rendered_age"].to_numpy(float)
    labels = test["age"].to_numpy(float)
    wrong = float((abs(labels - rendered) >= 20).mean())
    return (f"The test labels carry the planted errors ({wrong:.1%} of them are 20+ years off): "
            "a model that predicted every rendered age exactly would score PLCC "
            f"{metrics.plcc(rendered, labels):.3f} and MAE {float(abs(labels - rendered).mean()):.2f} "
            "years against them; the rendered-age columns score the models without that noise.")


def standin_note(backbones: list[str]) -> str:
    """What the shipped stand-in weights are, from their cards (for the report)."""
    parts = []
    for b in backbones:
        c = standin_weights.card(b)
        steps = standin_weights.training_steps(c)
        epochs = f"{sum(t['epochs'] for t in steps)} epochs"
        if len(steps) > 1:
            frozen = sum(t["epochs"] for t in steps if t.get("batchnorm", "").startswith("frozen"))
            detail = " + ".join(str(t["epochs"]) for t in steps)
            if frozen:
                detail += f"; {frozen} with BatchNorm frozen"
            epochs += f" ({detail})"
        corpora = standin_weights.training_corpora(c)
        faces = " + ".join(f"{k['train_images']:,}" for k in corpora)
        people = " + ".join(f"{k['people']:,}" for k in corpora)
        last = " of the last corpus" if len(corpora) > 1 else ""
        parts.append(f"{b}: {epochs} on {faces} faces of {people} other synthetic people "
                     f"(val age MAE {c['val']['mae_years']:.1f} years, PLCC "
                     f"{c['val']['plcc']:.3f} on held-out people{last})")
    return ("ImageNet weights cannot be downloaded here: the backbones start from the shipped "
            "stand-in (--weights=standin), pretrained by tools/pretrain_standin.py on "
            "synthetic faces to predict rendered age and identity traits; " + "; ".join(parts)
            + ". Because age is part of that objective, head-only tuning starts from features "
            "that already encode age, which ImageNet features do not; these figures show the "
            "pipeline on synthetic faces, not the study's results.")


TABLE3_LABELS = {"noisy": "labels as given", "drop": "cleaned: suspects dropped",
                 "relabel": "cleaned: suspects relabelled", "oracle": "rendered ages (oracle)"}


def _eval_config(cfg: ExperimentConfig, model_dir: str, data: str,
                 truth: str | None) -> evaluation.EvaluateConfig:
    return evaluation.EvaluateConfig(model_dir=model_dir, data_dir=data, split="test",
                                     bootstrap=cfg.bootstrap, ground_truth=truth)


def _table3(cfg: ExperimentConfig, rc: train_config.TrainConfig, name: str, data: str, truth: str,
            strategy, steps: Steps) -> dict:
    """Trains the audited run's config again on cleaned labels and on the rendered ages;
    scores all on the test split against the rendered ages (Table 3)."""
    runs = {"noisy": rc.model_dir}
    for variant in ("drop", "relabel", "oracle"):
        vdata = os.path.join(cfg.out_dir, f"data_{variant}")
        if not os.path.exists(os.path.join(vdata, "test.csv")):
            if variant == "oracle":
                clean.oracle_labels(data, truth, vdata)
            else:
                keras.backend.clear_session()
                c = clean.clean(clean.CleanConfig(model_dir=rc.model_dir, data_dir=data,
                                                  out_dir=vdata, action=variant,
                                                  sigmas=cfg.clean_sigmas, seed=cfg.train.seed,
                                                  feature_store=feature_store(cfg)))
                low, high = c["threshold_years"]
                steps.step(f"cleaned labels ({variant}): {c['changed']} of "
                              f"{c['judged_images']} train/val images beyond "
                              f"{cfg.clean_sigmas:g} local deviations ({low:.1f}-{high:.1f} "
                              "years by predicted age)")
        # Measurement-only runs: evaluation reads model.keras; nobody serves them, so no
        # SavedModel export (its tracing is a few seconds of the demo per run).
        vrc = dataclasses.replace(rc, data_dir=vdata, export=False,
                                  model_dir=os.path.join(cfg.out_dir, "runs", f"{name}_{variant}"))
        times = train_once(vrc, f"{name} on {TABLE3_LABELS[variant]}", strategy, steps.step)
        keras.backend.clear_session()
        # The test split is the original one: cleaning never touches it.
        evaluate_timed(_eval_config(cfg, vrc.model_dir, data, truth), times)
        steps.runs[f"{name}_{variant}"] = times
        runs[variant] = vrc.model_dir
    result = clean.table3(runs, cfg.bootstrap, cfg.train.seed)
    fileio.atomic_write_text(os.path.join(cfg.out_dir, "table3.json"), json.dumps(result, indent=2))
    text = clean.table3_markdown(result, TABLE3_LABELS)
    planted = pd.read_csv(truth)
    rate = float((planted["kind"] == "mislabel").mean())
    section = ("\n## Table 3: what cleaning the labels buys\n\n"
               f"{name} trained on each set of training/validation labels, all scored on the same "
               f"test split ({result['test_images']} images, {result['test_people']} people) "
               "against the rendered ages. Planted label noise: "
               f"{rate:.1%} of the synthetic rows carry an age 20+ years off (plus duplicates "
               "filed under another person, whose age follows that person's birth date). "
               "Intervals resample test people.\n\n" + text)
    steps.step("Table 3: " + ", ".join(
        f"{TABLE3_LABELS[k]} MAE {r['mae_years']:.2f}" for k, r in result["rows"].items()))
    return {**result, "section": section}


def train_and_evaluate_run(cfg: ExperimentConfig, name: str, rc: train_config.TrainConfig,
                           data: str, truth: str | None, strategy, say) -> dict[str, float]:
    """Trains (or finds trained) one run and evaluates it on test; `say` gets one line each.
    Returns the seconds of each part (the time table's row)."""
    times = train_once(rc, name, strategy, say)
    keras.backend.clear_session()
    e = evaluate_timed(_eval_config(cfg, rc.model_dir, data, truth), times)
    say(f"evaluated {name} on test: MAE {e['mae_years']:.2f} years, "
        f"PLCC {e['plcc']:.4f}, SROCC {e['srocc']:.4f}" + (
            f"; against rendered ages MAE {e['rendered']['mae_years']:.2f}, PLCC "
            f"{e['rendered']['plcc']:.4f}" if "rendered" in e else "") + (
            f"; {e['intervals']['calibrated_coverage']:.0%} intervals cover "
            f"{e['intervals']['coverage']:.3f}, mean width "
            f"{e['intervals']['mean_width']:.1f} years" if "intervals" in e else ""))
    return times


def run_lanes(run_cfgs: dict[str, train_config.TrainConfig]) -> list[list[str]]:
    """The runs as independent chains, in --runs order: a run that starts from another's
    weights (--init_from) follows it in its chain; the rest each start a chain."""
    by_dir = {rc.model_dir: name for name, rc in run_cfgs.items()}
    lanes: list[list[str]] = []
    lane_of: dict[str, int] = {}
    for name, rc in run_cfgs.items():
        parent = by_dir.get(rc.init_from) if rc.init_from else None
        if parent in lane_of:
            lane_of[name] = lane_of[parent]
        else:
            lane_of[name] = len(lanes)
            lanes.append([])
        lanes[lane_of[name]].append(name)
    return lanes


def split_lanes(lanes: list[list[str]], audit_name: str, parallel: int
                ) -> tuple[list[str], list[str]]:
    """(runs trained in this process, runs trained in another at the same time): the chain
    the audit needs stays here (the audit follows it while the other process trains); each
    other chain goes where fewer runs are, the audit counting as one."""
    if parallel < 2 or len(lanes) < 2:
        return [n for lane in lanes for n in lane], []
    mine = next(lane for lane in lanes if audit_name in lane)
    here, there = list(mine), []
    for lane in lanes:
        if lane is not mine:
            (there if len(there) <= len(here) + 1 else here).extend(lane)
    return here, there


def _run_elsewhere(name: str, cfg: ExperimentConfig, data: str, truth: str | None,
                   say) -> dict[str, float]:
    """A run trained and evaluated in the second process (protocol.elsewhere's task)."""
    return train_and_evaluate_run(cfg, name, run_configs(cfg)[name], data, truth,
                                  protocol.strategy_here(cfg.train.strategy), say)


LOG_NAME = "log.txt"  # the detailed log of every step, in out_dir


def run_experiment(cfg: ExperimentConfig, strategy) -> dict:
    """Runs everything; each step skips work already in out_dir, so a rerun resumes.

    Its numbered steps are said on stdout; everything else (the runs' epochs included) goes
    to <out_dir>/log.txt.
    """
    os.makedirs(cfg.out_dir, exist_ok=True)
    with progress.log_to(os.path.join(cfg.out_dir, LOG_NAME)), progress.quiet():
        return _run_steps(cfg, strategy)


def _run_steps(cfg: ExperimentConfig, strategy) -> dict:
    """The experiment's steps in order; returns {"table2": markdown, "report": path,
    "seconds": ...} (what summary() prints)."""
    start = time.monotonic()
    raw, data = os.path.join(cfg.out_dir, "raw"), os.path.join(cfg.out_dir, "data")
    run_cfgs = run_configs(cfg)
    names = list(run_cfgs)
    table3 = cfg.cleaning and not cfg.mat
    steps = Steps(4 + len(names) * 2 + 2 + (6 if table3 else 0))
    os.makedirs(cfg.out_dir, exist_ok=True)
    truth = _prepare_data(cfg, raw, data, steps)
    base_path = os.path.join(cfg.out_dir, "baselines.json")
    if os.path.exists(base_path):
        base = json.load(open(base_path))
    else:
        base = baselines.write(data, base_path, cfg.bootstrap, cfg.train.seed, truth)
    steps.step("baselines on test: training median MAE {:.2f} years; ridge on pixels MAE "
                  "{:.2f} years, PLCC {:.3f}".format(base["median"]["mae_years"],
                                                   base["ridge"]["mae_years"], base["ridge"]["plcc"]))
    first = next(iter(run_cfgs.values()))
    figs = input_figures.write_input_figures(data, os.path.join(cfg.out_dir, "figures"), 16,
                                             first.pipeline, first.model.image_size)
    steps.step(f"input figures: {', '.join(figs)}")

    audit_name = cfg.audit_run or next((n for n in names if run_cfgs[n].model.tune == "head"), names[0])
    here, there = split_lanes(run_lanes(run_cfgs), audit_name,
                              protocol.parallel_runs(cfg.parallel_runs, strategy))
    with protocol.elsewhere("age_tf.experiment:_run_elsewhere", there, (cfg, data, truth),
                            steps, os.path.join(cfg.out_dir, LOG_NAME)) as times_there:
        for name in here:
            steps.runs[name] = train_and_evaluate_run(cfg, name, run_cfgs[name], data, truth,
                                                      strategy, steps.step)
        keras.backend.clear_session()
        a = audit.audit(audit.AuditConfig(model_dir=run_cfgs[audit_name].model_dir,
                                          data_dir=data, truth_csv=truth, seed=cfg.train.seed,
                                          feature_store=feature_store(cfg)))
        steps.step(f"audited labels with {audit_name}: " + (
            ", ".join(f"P@{k} {v:.2f}" for k, v in a["ground_truth"]["precision_at_k"].items())
            if "ground_truth" in a else f"held-out MAE {a['heldout_mae_years']:.2f}"))
        t3 = None
        if truth and table3:
            t3 = _table3(cfg, run_cfgs[audit_name], audit_name, data, truth, strategy, steps)
    steps.runs.update(times_there)
    steps.runs = {n: steps.runs[n] for n in [*names, *steps.runs] if n in steps.runs}
    run_dirs = [run_cfgs[n].model_dir for n in names]
    notes = ("Synthetic IMDB-WIKI stand-in (rendered faces; see age-tf-synth), so the numbers "
             "show the pipeline working, not the study's results." if not cfg.mat else
             f"IMDB-WIKI metadata {cfg.mat}.")
    if truth:
        notes += " " + label_ceiling_note(data, truth)
    chained = [n for n in names if run_cfgs[n].init_from]
    if chained:
        notes += (f" The all-layers runs ({', '.join(chained)}) start from their backbone's "
                  f"head-only run, i.e. with a trained head, and train "
                  f"{cfg.full_from_head_epochs} epochs (--full_from_head_epochs; the study "
                  "started them from a random head).")
    standins = sorted({c.model.backbone for c in run_cfgs.values() if c.model.weights == "standin"})
    if standins:
        notes += " " + standin_note(standins)
    out = os.path.join(cfg.out_dir, "report.md")
    report.write_report(run_dirs, out, data,
                        extra_figures={"Figure 1: training faces": figs[0],
                                       "Figure 2: after the transformations": figs[1]},
                        notes=notes, baseline_results=base,
                        sections=[t3["section"]] if t3 else None)
    table2 = report.table2_markdown(report.table2_rows(run_dirs), baselines.table_rows(base))
    steps.step(f"wrote {out}")
    logging.info("where the time went:\n%s", steps.time_table())
    return {"table2": table2, "report": out, "seconds": time.monotonic() - start,
            "audit": a, "table3": t3}
