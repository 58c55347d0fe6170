"""Tests for age_tf.evaluate.report: Table 2 matches the metrics files; figures are linked."""

import json

import pandas as pd
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


def test_error_by_age_and_interval_sections_with_baselines(tmp_path):
    by = {"10-19": {"images": 60, "mae_years": 8.25, "bias_years": 6.5},
          "30-39": {"images": 80, "mae_years": 4.0, "bias_years": -1.25}}
    cover = {"calibrated_coverage": 0.9, "coverage": 0.894, "mean_width": 21.3, "images": 140,
             "by_decade": {"10-19": {"images": 60, "coverage": 0.85},
                           "30-39": {"images": 80, "coverage": 0.925}}}
    runs = [_fake_run(tmp_path, "a", "mobilenet_v2", "head", by_decade=by, intervals=cover)]
    baseline = {"median": {"loss": 0.1, "mae_years": 14.0, "plcc": float("nan"),
                           "srocc": float("nan"), "cs5": 0.2, "images": 140,
                           "by_decade": {"10-19": {"images": 60, "mae_years": 20.0,
                                                   "bias_years": 20.0}}}}
    text = report.write_report(runs, str(tmp_path / "report.md"), table1="| t1 |\n",
                               baseline_results=baseline)
    assert "## Error by age" in text and "| 10-19 (n=60) | 30-39 (n=80) |" in text
    assert "| mobilenet_v2, new head only | 8.2 / +6.5 | 4.0 / -1.2 |" in text
    assert "| training median, baseline | 20.0 / +20.0 | — |" in text
    assert (tmp_path / "error_by_decade.png").stat().st_size > 10_000
    assert "## Age intervals" in text
    assert "| mobilenet_v2, new head only | labels | 0.894 | 21.3 | 0.85 (n=60) | 0.93 (n=80) |" in text


def test_the_data_section_must_describe_the_data_table_2_came_from(trained_run, tmp_path):
    # Hostile-input item 8: --data_dir=<another folder> was described as the runs' data.
    import shutil

    from age_tf.evaluate import evaluation

    model_dir, data_dir = trained_run
    evaluation.evaluate(evaluation.EvaluateConfig(model_dir=model_dir, data_dir=data_dir,
                                                  bootstrap=0))
    other = tmp_path / "other"
    shutil.copytree(data_dir, other)
    test = pd.read_csv(other / "test.csv")
    test.iloc[1:].to_csv(other / "test.csv", index=False)
    (other / "train.csv").write_text((other / "train.csv").read_text() + "\n")
    with pytest.raises(ValueError, match=rf"--data_dir={other} is not the data {model_dir} was"):
        report.write_report([model_dir], str(tmp_path / "r.md"), str(other), table1="| t |\n")
    assert "## Data" in report.write_report([model_dir], str(tmp_path / "r.md"), data_dir,
                                            table1="| t |\n")


def test_decision_and_risk_coverage_sections(tmp_path):
    cover = {"calibrated_coverage": 0.9, "coverage": 0.9, "mean_width": 20.0, "images": 100,
             "by_decade": {"30-39": {"images": 100, "coverage": 0.9}},
             "risk_coverage": {"answered": [0.5, 1.0], "mae_years": [3.0, 5.0],
                               "rendered_mae_years": [2.0, 4.0]}}
    entry = {"cut": {"over_above": 31.4, "under_below": None},
             "labels": {"n_under": 40, "false_over": 0.025, "false_over_ci95": [0.0, 0.075],
                        "false_under": 0.01, "uncertain": 0.61, "challenge": 0.05},
             "rendered": {"false_over": 0.0}}
    decided = {"error": 0.05, "thresholds": {"18": entry},
               "sweep": {"10": {"labels": 0.0, "rendered": 0.0, "uncertain": 0.7},
                         "18": {"labels": 0.025, "rendered": 0.0, "uncertain": 0.61}}}
    runs = [_fake_run(tmp_path, "a", "mobilenet_v2", "head", intervals=cover,
                      decisions=decided, by_decade={"30-39": {"images": 100, "mae_years": 5.0,
                                                              "bias_years": 0.0}})]
    text = report.write_report(runs, str(tmp_path / "report.md"), table1="| t1 |\n")
    assert ("| mobilenet_v2, new head only | 18 | 31.4 / — | 40 | 0.025 [0.000, 0.075] | 0.000 "
            "| 0.010 | 0.61 | 0.050 |") in text
    assert "err at most 5% each way" in text and "every face uncertain" in text
    for figure in ("false_over.png", "risk_coverage.png"):
        assert (tmp_path / figure).stat().st_size > 10_000 and f"]({figure})" in text
