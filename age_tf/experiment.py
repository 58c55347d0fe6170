"""The whole study in one call: data, the four training runs, evaluation, audit, report."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import keras
from absl import logging

from age_tf import audit, evaluation, pipeline, report, training
from age_tf.data import prepare, synth

STUDY_RUNS = ("mobilenet_v2_head", "mobilenet_v2_full", "efficientnet_b3_head", "efficientnet_b3_full")


@dataclasses.dataclass
class ExperimentConfig:
    """What `age-tf-experiment` runs.

    Attributes:
      out_dir: everything goes here (raw/, data/, runs/<name>/, figures/, report.md).
      train: the base training config (each run overrides a few fields).
      run_configs: {run name: TrainConfig builder} for the runs, in report order.
      mat / images_dir: real IMDB-WIKI data; None generates the synthetic stand-in.
      synth: the synthetic set's config.
      prepare: preparation parameters (paths are filled in here).
      standin_epochs: with --weights=none, first pretrain each backbone for this many epochs
        on a separate synthetic set and start the runs from it: a stand-in for ImageNet
        weights, which cannot be downloaded offline. 0: start from random weights.
      standin_images: rows of that separate synthetic set.
      feature_cache_for_head: train head-mode runs from cached backbone features.
      bootstrap: resamples for the evaluation's confidence intervals.
      audit_run: run to audit (default: the first head-mode run).
    """

    out_dir: str
    run_configs: dict[str, Callable[[str, str], training.TrainConfig]]
    mat: str | None = None
    images_dir: str | None = None
    synth: synth.SynthConfig = dataclasses.field(default_factory=synth.SynthConfig)
    prepare_kwargs: dict = dataclasses.field(default_factory=dict)
    standin_epochs: int = 0
    standin_images: int = 1200
    feature_cache_for_head: bool = True
    bootstrap: int = 1000
    audit_run: str | None = None


class _Progress:
    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()

    def step(self, what: str) -> None:
        self.done += 1
        line = f"[{self.done}/{self.total} {time.monotonic() - self.start:5.0f}s] {what}"
        print(line, flush=True)
        logging.info(line)


def _prepare_data(cfg: ExperimentConfig, raw: str, data: str, progress: _Progress) -> str | None:
    """Synthesizes (unless real data is given) and prepares; skips what exists. Returns the
    ground-truth path for synthetic data."""
    truth = None
    if cfg.mat:
        mat, images_dir = cfg.mat, cfg.images_dir
        progress.step(f"using real metadata {mat}")
    else:
        mat, images_dir = os.path.join(raw, "imdb.mat"), os.path.join(raw, "imdb_crop")
        truth = os.path.join(raw, "ground_truth.csv")
        if os.path.exists(truth):
            progress.step(f"synthetic IMDB-WIKI already in {raw}")
        else:
            synth.generate(cfg.synth, raw)
            progress.step(f"generated {cfg.synth.num_images} synthetic rows in {raw}")
    if os.path.exists(os.path.join(data, "report.json")):
        progress.step(f"prepared data already in {data}")
    else:
        r = prepare.prepare(prepare.PrepareConfig(mat=mat, images_dir=images_dir, out_dir=data,
                                                  **cfg.prepare_kwargs))
        progress.step("prepared: " + ", ".join(f"{k} {v['images']}" for k, v in r["splits"].items()))
    return truth


def _standin_weights(cfg: ExperimentConfig, base: training.TrainConfig, backbone: str,
                     strategy, progress: _Progress) -> str:
    """Pretrains a backbone on a separate synthetic set; returns its weights file."""
    root = os.path.join(cfg.out_dir, "standin")
    path = os.path.join(root, f"{backbone}.weights.h5")
    if os.path.exists(path):
        progress.step(f"stand-in {backbone} weights already in {path}")
        return path
    raw, data = os.path.join(root, "raw"), os.path.join(root, "data")
    if not os.path.exists(os.path.join(raw, "ground_truth.csv")):
        synth.generate(dataclasses.replace(cfg.synth, num_images=cfg.standin_images,
                                           seed=cfg.synth.seed + 1000), raw)
    if not os.path.exists(os.path.join(data, "report.json")):
        prepare.prepare(prepare.PrepareConfig(mat=os.path.join(raw, "imdb.mat"),
                                              images_dir=os.path.join(raw, "imdb_crop"),
                                              out_dir=data, sample_fraction=1.0, split=(0.8, 0.1, 0.1)))
    run_cfg = dataclasses.replace(
        base, data_dir=data, model_dir=os.path.join(root, f"{backbone}_run"),
        model=dataclasses.replace(base.model, backbone=backbone, tune="full", weights="none",
                                  bn_momentum=0.9),
        epochs=cfg.standin_epochs, learning_rate=1e-3, warmup_epochs=0.0,
        early_stopping_patience=0, export=False, feature_cache=False, flags_text="")
    training.train_and_evaluate(run_cfg, strategy)
    model = keras.models.load_model(os.path.join(run_cfg.model_dir, "model.keras"))
    backbone_layer = next(l for l in model.layers if isinstance(l, keras.Model))
    tmp = path.replace(".weights.h5", ".tmp.weights.h5")
    backbone_layer.save_weights(tmp)
    os.replace(tmp, path)
    keras.backend.clear_session()
    progress.step(f"pretrained stand-in {backbone} weights ({cfg.standin_epochs} epochs on a "
                  f"separate synthetic set): {path}")
    return path


def run_experiment(cfg: ExperimentConfig, strategy) -> dict:
    """Runs everything; each step skips work already in out_dir, so a rerun resumes.

    Returns:
      {"table2": markdown, "report": path, "runs": {name: eval metrics}, "seconds": ...}.
    """
    start = time.monotonic()
    raw, data = os.path.join(cfg.out_dir, "raw"), os.path.join(cfg.out_dir, "data")
    names = list(cfg.run_configs)
    run_cfgs = {n: cfg.run_configs[n](data, os.path.join(cfg.out_dir, "runs", n)) for n in names}
    backbones = sorted({c.model.backbone for c in run_cfgs.values()})
    standin = any(c.model.weights == "none" for c in run_cfgs.values()) and cfg.standin_epochs > 0
    progress = _Progress(3 + len(names) * 2 + 2 + (len(backbones) if standin else 0))
    os.makedirs(cfg.out_dir, exist_ok=True)
    truth = _prepare_data(cfg, raw, data, progress)
    first = next(iter(run_cfgs.values()))
    figs = pipeline.write_input_figures(data, os.path.join(cfg.out_dir, "figures"), 16, first.pipeline)
    progress.step(f"input figures: {', '.join(figs)}")

    weights = {}
    if standin:
        for b in backbones:
            weights[b] = _standin_weights(cfg, first, b, strategy, progress)
    for name in names:
        rc = run_cfgs[name]
        if rc.model.weights == "none" and rc.model.backbone in weights:
            rc.model = dataclasses.replace(rc.model, weights=weights[rc.model.backbone])
        if rc.model.tune == "head" and cfg.feature_cache_for_head:
            rc.feature_cache = True
        status = training.run_status(rc.model_dir)
        # "Done" is the run's own checkpointed state: all epochs, or stopped early.
        if status["finished"] and os.path.exists(os.path.join(rc.model_dir, "metrics.json")):
            progress.step(f"{name}: already trained ({status['reason']} after epoch {status['epoch']})")
        else:
            keras.backend.clear_session()
            m = training.train_and_evaluate(rc, strategy)
            progress.step(f"trained {name}: best epoch {m['best_epoch']}, val MAE "
                          f"{m['val']['mae_years']:.2f} years, SROCC {m['val']['srocc']:.4f}")
        keras.backend.clear_session()
        e = evaluation.evaluate(rc.model_dir, data, "test", cfg.bootstrap)
        progress.step(f"evaluated {name} on test: MAE {e['mae_years']:.2f} years, "
                      f"PLCC {e['plcc']:.4f}, SROCC {e['srocc']:.4f}")
    audit_name = cfg.audit_run or next((n for n in names if run_cfgs[n].model.tune == "head"), names[0])
    keras.backend.clear_session()
    a = audit.audit(run_cfgs[audit_name].model_dir, data, truth_csv=truth)
    progress.step(f"audited labels with {audit_name}: " + (
        ", ".join(f"P@{k} {v:.2f}" for k, v in a["ground_truth"]["precision_at_k"].items())
        if "ground_truth" in a else f"held-out MAE {a['heldout_mae_years']:.2f}"))
    run_dirs = [run_cfgs[n].model_dir for n in names]
    notes = ("Synthetic IMDB-WIKI stand-in (rendered faces; see age-tf-synth), so the numbers "
             "show the pipeline working, not the study's results." if not cfg.mat else
             f"IMDB-WIKI metadata {cfg.mat}.")
    if standin:
        notes += (" ImageNet weights cannot be downloaded here: each backbone was first trained "
                  f"for {cfg.standin_epochs} epochs on a separate synthetic set, and the runs "
                  "start from that stand-in.")
    out = os.path.join(cfg.out_dir, "report.md")
    report.write_report(run_dirs, out, data,
                        extra_figures={"Figure 1: training faces": figs[0],
                                       "Figure 2: after the transformations": figs[1]},
                        notes=notes)
    table2 = report.table2_markdown(report.table2_rows(run_dirs))
    progress.step(f"wrote {out}")
    return {"table2": table2, "report": out, "seconds": time.monotonic() - start,
            "audit": a}
