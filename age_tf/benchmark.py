"""The unified benchmark's protocol in one call (Paplhám et al., CVPR 2024): for each of its
five subject-exclusive splits, train, select on validation, test; then test every model on
the whole of every other dataset given; report MAE and CS@5 as mean ± std over the splits.

Data are the benchmark's database files (--database, --other_databases; see
sources/facebase.py), or, without them, synthetic releases written in that format (rendered
faces, turned in-plane, with their landmarks) so the protocol runs offline end to end.
Faces are aligned as the benchmark aligns them (data/align.py) unless --noalign.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np

from age_tf import fileio, progress
from age_tf import protocol as protocol_floor
from age_tf.data import prepare, prepared
from age_tf.data.sources import facebase
from age_tf.evaluate import baselines, evaluation
from age_tf.protocol import Steps, train_once
from age_tf.protocol_config import (  # noqa: F401  (its flags)
    EXCLUDED,
    SPLITS,
    BenchmarkConfig,
    configure_run,
)
from age_tf.synthetic import formats, synth
from age_tf.train import train_config

SYNTHETIC_OTHER = "other"  # the second synthetic dataset's folder name


def _data(cfg: BenchmarkConfig, steps: Steps) -> tuple[str, str, dict[str, tuple[str, str]]]:
    """(database, its images, {other name: (database, images)}), synthesizing what is not
    given."""
    if cfg.database:
        main = (cfg.database, cfg.images_dir or os.path.dirname(os.path.abspath(cfg.database)))
        steps.step(f"using {cfg.database}")
    else:
        raw = os.path.join(cfg.out_dir, "raw", "main")
        main = (formats.facebase_database(raw), os.path.dirname(formats.facebase_database(raw)))
        _synthesize(cfg, raw, cfg.num_images, cfg.train.seed, steps)
    others = {}
    for i, path in enumerate(cfg.other_databases):
        images = (cfg.other_images_dirs[i] if cfg.other_images_dirs
                  else os.path.dirname(os.path.abspath(path)))
        others[os.path.splitext(os.path.basename(path))[0]] = (path, images)
    if not cfg.database and not cfg.other_databases:
        raw = os.path.join(cfg.out_dir, "raw", SYNTHETIC_OTHER)
        _synthesize(cfg, raw, max(100, cfg.num_images // 3), cfg.train.seed + 1, steps)
        others[SYNTHETIC_OTHER] = (formats.facebase_database(raw),
                                   os.path.dirname(formats.facebase_database(raw)))
    return main[0], main[1], others


def _synthesize(cfg: BenchmarkConfig, raw: str, n: int, seed: int, steps: Steps) -> None:
    if os.path.exists(formats.facebase_database(raw)):
        steps.step(f"synthetic facebase release already in {raw}")
        return
    synth.generate(synth.SynthConfig(num_images=n, seed=seed, format="facebase",
                                     max_roll=cfg.max_roll, overwrite=True), raw)
    steps.step(f"generated a synthetic facebase release of {n} rows in {raw}")


def _prepare(cfg: BenchmarkConfig, database: str, images: str, out: str, split: str,
             k: int) -> dict:
    if not prepared.PreparedDir(out).exists():
        prepare.prepare(prepare.PrepareConfig(format="facebase", database=database,
                                              images_dir=images, out_dir=out, split=split,
                                              benchmark_split=k, seed=cfg.train.seed,
                                              max_age=cfg.max_age))
    return prepared.PreparedDir(out).report()


def run_benchmark(cfg: BenchmarkConfig, strategy) -> dict:
    """Runs the protocol; each step skips what out_dir already holds. Steps on stdout, the
    rest in <out_dir>/log.txt."""
    os.makedirs(cfg.out_dir, exist_ok=True)
    with progress.log_to(os.path.join(cfg.out_dir, "log.txt")), progress.quiet():
        return _run_steps(cfg, strategy)


def _run_steps(cfg: BenchmarkConfig, strategy) -> dict:
    start = time.monotonic()
    specs = cfg.run_specs()
    n_other = len(cfg.other_databases) or (0 if cfg.database else 1)
    steps = Steps((1 if cfg.database else 1 + (0 if cfg.other_databases else 1))
                  + len(cfg.splits) * (2 + len(specs)) + 1 + n_other)
    database, images, others = _data(cfg, steps)
    data_root = os.path.join(cfg.out_dir, "data")
    other_dirs = {}
    for name, (path, other_images) in others.items():
        other_dirs[name] = os.path.join(data_root, f"whole_{name}")
        r = _prepare(cfg, path, other_images, other_dirs[name], prepare.WHOLE, 0)
        steps.step(f"prepared {name} whole for testing: {r['splits']['test']['images']} faces")
    results = {"splits": {}, "protocol": protocol(cfg)}
    # Splits are independent: a second process takes every other one when two cores are idle
    # for it (protocol.parallel_runs), the splits' lines joining these as they come.
    ks = list(cfg.splits)
    there = ks[1::2] if protocol_floor.parallel_runs(cfg.parallel_runs, strategy) > 1 else []
    with protocol_floor.elsewhere("age_tf.benchmark:_split_elsewhere", there,
                                  (cfg, database, images, other_dirs), steps,
                                  os.path.join(cfg.out_dir, "log.txt")) as splits_there:
        for k in [k for k in ks if k not in there]:
            results["splits"][str(k)] = run_split(k, cfg, database, images, other_dirs,
                                                  strategy, steps.step)
    results["splits"].update({str(k): v for k, v in splits_there.items()})
    results["splits"] = {str(k): results["splits"][str(k)] for k in ks}
    results["table"] = table_rows(results, specs, list(other_dirs))
    text = markdown(results, list(other_dirs))
    out = os.path.join(cfg.out_dir, "benchmark.md")
    fileio.atomic_write_text(out, text)
    fileio.atomic_write_text(os.path.join(cfg.out_dir, "benchmark.json"),
                             json.dumps(results, indent=2, default=float))
    steps.step(f"wrote {out}")
    return {"text": text, "path": out, "seconds": time.monotonic() - start, **results}


def run_split(k: int, cfg: BenchmarkConfig, database: str, images: str,
              other_dirs: dict[str, str], strategy, say) -> dict:
    """One split of the protocol: prepare it, its baselines, then each run trained, tested,
    and tested on the whole of every other dataset; `say` gets a line per step."""
    data = os.path.join(cfg.out_dir, "data", f"split_{k}")
    r = _prepare(cfg, database, images, data, prepare.BENCHMARK, k)
    say(f"split {k}: " + ", ".join(f"{s} {v['images']}" for s, v in r["splits"].items())
        + f" ({r['split']})")
    split = {"data": data, "runs": {}, "baselines": _baselines(cfg, data, other_dirs)}
    say(f"split {k} baselines: median MAE {split['baselines']['own']['median']['mae_years']:.2f}, "
        f"ridge MAE {split['baselines']['own']['ridge']['mae_years']:.2f}")
    for spec in cfg.run_specs():
        rc = _run_config(cfg, spec, data, k)
        name = os.path.basename(rc.model_dir)
        # Its training line to the log only: the test line below says it all.
        train_once(rc, f"split {k} {name}", strategy, progress.say)
        keras.backend.clear_session()
        own = evaluation.evaluate(evaluation.EvaluateConfig(
            model_dir=rc.model_dir, data_dir=data, bootstrap=cfg.bootstrap,
            seed=cfg.train.seed))
        cross = {o: _scores(evaluation.evaluate(evaluation.EvaluateConfig(
            model_dir=rc.model_dir, data_dir=d, other_data=True, bootstrap=0,
            seed=cfg.train.seed))) for o, d in other_dirs.items()}
        split["runs"][spec] = {"model_dir": rc.model_dir, **_scores(own), "other": cross}
        say(f"split {k} {name}: test MAE {own['mae_years']:.2f}, CS@5 "
            f"{own['cs5']:.3f}" + "".join(f"; on {o} MAE {c['mae_years']:.2f}"
                                         for o, c in cross.items()))
    return split


def _split_elsewhere(k: int, cfg: BenchmarkConfig, database: str, images: str,
                     other_dirs: dict[str, str], say) -> dict:
    """A split run in the second process (protocol.elsewhere's task)."""
    return run_split(k, cfg, database, images, other_dirs,
                     protocol_floor.strategy_here(cfg.train.strategy), say)


def _run_config(cfg: BenchmarkConfig, spec: str, data: str, k: int) -> train_config.TrainConfig:
    rc = configure_run(cfg.train, spec, data, os.path.join(cfg.out_dir, "runs", f"split_{k}"))
    if cfg.feature_cache_for_head and rc.model.tune == "head":
        rc = dataclasses.replace(rc, feature_cache=True,
                                 feature_store=os.path.join(cfg.out_dir, "features"))
    return rc


def _scores(m: dict) -> dict:
    return {k: m[k] for k in ("mae_years", "cs5", "images", "mae_years_ci95") if k in m}


def _baselines(cfg: BenchmarkConfig, data: str, other_dirs: dict[str, str]) -> dict:
    """The training median and the ridge on pixels of this split, on its test split and on
    each other dataset (cached in the split's folder)."""
    path = os.path.join(data, "benchmark_baselines.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    fit = baselines.Fitted(data, align=cfg.train.pipeline.align)
    own = baselines.compute(data, 0, cfg.train.seed, align=cfg.train.pipeline.align)
    out = {"own": {k: _scores(v) for k, v in own.items()},
           "other": {o: {k: _scores(v) for k, v in baselines.transfer(fit, d).items()}
                     for o, d in other_dirs.items()}}
    fileio.atomic_write_text(path, json.dumps(out, indent=2, default=float))
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one split)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def table_rows(results: dict, specs: list[str], others: list[str]) -> list[dict]:
    """One row per run and head, then the baselines: per split and mean ± std."""
    splits = results["splits"]
    rows = []
    entries = [(spec, lambda s, spec=spec: s["runs"][spec], lambda s, o, spec=spec:
                s["runs"][spec]["other"][o]) for spec in specs]
    entries += [(baselines.NAMES[b] + " (baseline)", lambda s, b=b: s["baselines"]["own"][b],
                 lambda s, o, b=b: s["baselines"]["other"][o][b]) for b in baselines.NAMES]
    for name, own, other in entries:
        per = {k: own(s) for k, s in splits.items()}
        row = {"model": name, "per_split": {k: v["mae_years"] for k, v in per.items()},
               "mae": _mean_std([v["mae_years"] for v in per.values()]),
               "cs5": _mean_std([v["cs5"] for v in per.values()]), "other": {}}
        for o in others:
            vals = [other(s, o) for s in splits.values()]
            row["other"][o] = {"mae": _mean_std([v["mae_years"] for v in vals]),
                               "cs5": _mean_std([v["cs5"] for v in vals])}
        rows.append(row)
    return rows


def protocol(cfg: BenchmarkConfig) -> dict:
    """The protocol as run, stated beside the table."""
    p, m = cfg.train.pipeline, cfg.train.model
    return {"alignment": ("the benchmark's rotated square from the eyes and mouth (eye-to-eye "
                          "x1.92, eye-to-mouth x1.89), from each face's aligned_bbox"
                          if p.align else "none: whole images resized"),
            "image_size": m.image_size, "augmentation": p.augment, "backbone_weights": m.weights,
            "splits": {str(k): {"train": list(facebase.BENCHMARK_SPLITS[k][0]),
                                "val": list(facebase.BENCHMARK_SPLITS[k][1]),
                                "test": list(facebase.BENCHMARK_SPLITS[k][2])}
                       for k in cfg.splits},
            "selection": f"the epoch with the best {cfg.train.monitor} on the split's "
                         "validation folders",
            "data": "synthetic facebase releases (age-tf-synth)" if not cfg.database
            else os.path.basename(cfg.database)}


def _cell(pair: tuple[float, float], fmt: str) -> str:
    return f"{pair[0]:{fmt}} ± {pair[1]:{fmt}}"


def markdown(results: dict, others: list[str]) -> str:
    """The table (mean ± std over the splits, each split's MAE, cross-dataset columns), then
    the protocol."""
    rows, splits = results["table"], list(results["splits"])
    head = (["model", "MAE (years)", "CS@5"] + [f"split {k} MAE" for k in splits]
            + [c for o in others for c in (f"on {o}: MAE", f"on {o}: CS@5")])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], _cell(r["mae"], ".2f"), _cell(r["cs5"], ".3f")]
        cells += [f"{r['per_split'][k]:.2f}" for k in splits]
        cells += [c for o in others for c in (_cell(r["other"][o]["mae"], ".2f"),
                                              _cell(r["other"][o]["cs5"], ".3f"))]
        lines.append("| " + " | ".join(cells) + " |")
    p = results["protocol"]
    split_text = "; ".join(f"{k}: train {v['train']}, val {v['val']}, test {v['test']}"
                           for k, v in p["splits"].items())
    return ("# Unified benchmark\n\n" + "\n".join(lines) + "\n\n"
            f"Mean ± sample standard deviation over {len(splits)} split(s). Data: {p['data']}. "
            f"Alignment: {p['alignment']}. Image size {p['image_size']} px; augmentation "
            f"{p['augmentation']}; backbone weights {p['backbone_weights']}; model selection: "
            f"{p['selection']}. Splits (folders): {split_text}. Cross-dataset columns: each "
            "split's model tested on the whole of the other dataset. Baselines: the training "
            "split's median age, and a ridge regression on 112 pixel features (penalty chosen "
            "on validation), fitted per split.\n")


def summary(result: dict) -> str:
    return f"\n{result['text']}\nwrote {os.path.abspath(result['path'])}  " \
           f"({result['seconds'] / 60:.1f} min)"


__all__ = ["BenchmarkConfig", "run_benchmark", "summary", "EXCLUDED"]
