"""Tests for age_tf.benchmark: the unified benchmark's protocol, its table and its checks."""

import json
import os

import numpy as np
import pytest

from age_tf import benchmark
from age_tf.train import models, train_config


def _fake(maes, others):
    splits = {}
    for k, (m, o) in enumerate(zip(maes, others)):
        score = lambda v: {"mae_years": v, "cs5": v / 100}  # noqa: E731
        splits[str(k)] = {"runs": {"net": {**score(m), "other": {"fgnet": score(o)}}},
                          "baselines": {"own": {"median": score(15.0), "ridge": score(12.0)},
                                        "other": {"fgnet": {"median": score(16.0),
                                                            "ridge": score(13.0)}}}}
    return {"splits": splits, "protocol": benchmark.protocol(benchmark.BenchmarkConfig(
        splits=tuple(range(len(maes)))))}


def test_the_table_gives_mean_and_sample_std_over_the_splits_beside_the_baselines():
    results = _fake([5.0, 6.0, 7.0, 6.0, 6.0], [9.0, 10.0, 11.0, 10.0, 10.0])
    results["table"] = benchmark.table_rows(results, ["net"], ["fgnet"])
    net, median, ridge = results["table"]
    assert net["mae"] == (6.0, pytest.approx(np.std([5, 6, 7, 6, 6], ddof=1)))
    assert net["other"]["fgnet"]["mae"][0] == 10.0 and median["mae"] == (15.0, 0.0)
    text = benchmark.markdown(results, ["fgnet"])
    assert "| net | 6.00 ± 0.71 | 0.060 ± 0.007 | 5.00 | 6.00 | 7.00 | 6.00 | 6.00 | 10.00 ± 0.71" in text
    assert "| training median (baseline) | 15.00 ± 0.00" in text
    assert "3: train [5, 6, 7, 8, 9, 0], val [1, 2], test [3, 4]" in text  # split 3 as listed
    assert "Alignment: the benchmark's rotated square" not in text  # --align is off by default


@pytest.mark.parametrize("kw, message", [
    ({"splits": (5,)}, "--splits takes split numbers 0-4"),
    ({"other_databases": ("a.json",), "other_images_dirs": ("x", "y")}, "one each"),
    ({"images_dir": "x"}, "--images_dir goes with --database"),
    ({"database": "/nonexistent.json"}, "no such database file"),
])
def test_bad_flags_are_named_before_any_work(kw, message):
    with pytest.raises(ValueError, match=message):
        benchmark.BenchmarkConfig(out_dir="x", **kw).validate()


@pytest.mark.slow
def test_the_protocol_end_to_end_on_synthetic_releases_and_resumed(tmp_path):
    """Two splits of a small synthetic facebase release, aligned, at 64 px (the stand-in's
    size; at 32 px its head did worse than the median): each split
    trained and tested, each model tested on the other dataset; a rerun trains nothing."""
    from age_tf.data import pipeline

    train = train_config.TrainConfig(
        model=models.ModelConfig(image_size=64, weights="standin", tune="head"),
        pipeline=pipeline.PipelineConfig(batch_size=32, align=True), epochs=8,
        strategy="one_device", log_every=0, export=False)
    cfg = benchmark.BenchmarkConfig(out_dir=str(tmp_path / "b"), num_images=400, splits=(0, 3),
                                    bootstrap=0, train=train)
    result = benchmark.run_benchmark(cfg, None)
    saved = json.load(open(tmp_path / "b" / "benchmark.json"))
    assert list(saved["splits"]) == ["0", "3"]
    net = saved["table"][0]
    assert net["model"] == "mobilenet_v2_head" and set(net["per_split"]) == {"0", "3"}
    median = next(r for r in saved["table"] if r["model"].startswith("training median"))
    assert "other" in net["other"] and 0 < net["mae"][0] < median["mae"][0]  # it learned
    for k in ("0", "3"):
        run = saved["splits"][k]["runs"]["mobilenet_v2_head"]["model_dir"]
        assert os.path.exists(os.path.join(run, "eval", "metrics.json"))
    assert "on other: MAE" in result["text"]
    mtime = os.path.getmtime(os.path.join(run, "model.keras"))
    benchmark.run_benchmark(cfg, None)  # resumes: nothing trained again
    assert os.path.getmtime(os.path.join(run, "model.keras")) == mtime
