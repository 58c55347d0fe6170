"""Tests for age_tf.evaluate.report: Table 2 matches the metrics files; figures are linked."""

import json

import pytest

from age_tf.evaluate import report


def _fake_run(root, name, backbone, tune, **m):
    run = root / name
    (run / "eval").mkdir(parents=True)
    fig = run / "eval" / "figure4_scatter.png"
    fig.write_bytes(b"png")
    metrics = {"backbone": backbone, "tune": tune, "loss": 0.0471, "mae_years": 4.71,
               "rmse_years": 6.0, "plcc": 0.81, "srocc": 0.79, "cs5": 0.6, "images": 100,
               "plcc_ci95": [0.78, 0.84], "srocc_ci95": [0.75, 0.82],
               "figures": {"scatter": str(fig)}, **m}
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps({"model": {"image_size": 64}}))
    return str(run)


def test_report_tables_match_metrics_files(tmp_path):
    runs = [_fake_run(tmp_path, "a", "mobilenet_v2", "head", plcc=0.8123),
            _fake_run(tmp_path, "b", "efficientnet_b3", "full", srocc=0.9012, loss=0.0399)]
    text = report.write_report(runs, str(tmp_path / "report.md"), table1="| t1 |\n")
    assert "| mobilenet_v2 | new head only | 0.0471 | 4.71 | 0.8123 [0.780, 0.840]" in text
    assert "| efficientnet_b3 | all layers | 0.0399 | 4.71 | 0.8100 [0.780, 0.840] | 0.9012" in text
    assert "| t1 |" in text
    assert "](a/eval/figure4_scatter.png)" in text  # relative link that resolves
    assert open(tmp_path / "report.md").read() == text


def test_report_needs_evaluated_runs(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match="run age-tf-evaluate --model_dir="):
        report.table2_rows([str(tmp_path / "r")])
