"""End-to-end tests of the main command, age-tf-experiment."""

import glob
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # trains models or runs the commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout):
    return subprocess.run([sys.executable, "-m", "age_tf.cli.experiment", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _check_outputs(out, runs):
    text = open(os.path.join(out, "report.md")).read()
    for run in runs:
        m = json.load(open(os.path.join(out, "runs", run, "eval", "metrics.json")))
        # The report's Table 2 row is the metrics file's numbers.
        assert f"| {m['loss']:.4f} | {m['mae_years']:.2f} | {m['plcc']:.4f}" in text
        for fig in m["figures"].values():
            assert os.path.exists(fig)
    for fig in ("figures/figure1_faces.png", "figures/figure2_transformed.png",
                "data/age_distribution.png"):
        assert os.path.exists(os.path.join(out, fig))
    assert "## Table 1" in text and "## Table 2" in text
    return text


def test_tiny_experiment_end_to_end_and_resume(tmp_path):
    out = str(tmp_path / "exp")
    # Early stopping that triggers: the first epoch sets the reference, no later epoch can
    # beat it by 10, so each run stops after epoch 2 of 3. Table 3 (three more runs) is
    # checked at full size in the slow tier (test_demo_experiment_as_in_readme).
    args = ["--config=demo", f"--out_dir={out}", "--num_images=300",
            "--image_size=32", "--epochs=3", "--steps_per_epoch=3", "--batch_size=16",
            "--early_stopping_patience=1", "--early_stopping_min_delta=10", "--monitor=val_loss",
            "--bootstrap=50", "--full_from_head_epochs=3", "--nocleaning",
            # The learned interval scale is tested with the served runs (a pass less each).
            "--interval_method=binned",
            "--runs=mobilenet_v2_head,mobilenet_v2_full,mobilenet_v2_head@ordinal"]
    r = _run(args, 900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Table 2 (test set)" in r.stdout and "report:" in r.stdout
    assert "[1/" in r.stdout  # progress lines
    # The first screen: each progress line once, no noise, the details in log.txt.
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    steps = [line for line in lines if line.startswith("[")]
    assert len(steps) == len(set(steps)) >= 12 and len(lines) <= 60, r.stdout
    for noise in ("retracing", "GeneratorDatasetOp", "UserWarning", "INFO:tensorflow",
                  "experiment.py:"):
        assert noise not in r.stdout + r.stderr, (noise, r.stderr[-3000:])
    log = open(os.path.join(out, "log.txt")).read()
    assert "epoch 1/3" in log and steps[-1] in log
    text = _check_outputs(out, ["mobilenet_v2_head", "mobilenet_v2_full",
                                "mobilenet_v2_head_ordinal"])
    assert "| head |" in text and "| ordinal |" in text  # the heads told apart
    cfg = json.load(open(os.path.join(out, "runs", "mobilenet_v2_full", "config.json")))
    assert cfg["model"]["tune"] == "full" and cfg["learning_rate"] == 0.0001  # from its run config
    assert cfg["model"]["weights"] == "standin"  # the shipped stand-in, from demo.cfg
    assert cfg["init_from"] == os.path.join(out, "runs", "mobilenet_v2_head")  # its head run
    report = open(os.path.join(out, "report.md")).read()
    assert "rendered age: MAE" in report and "stand-in" in report
    assert "start from their backbone's head-only run" in report
    audit = json.load(open(os.path.join(out, "runs", "mobilenet_v2_head", "audit", "audit.json")))
    assert "precision_at_k" in audit["ground_truth"]
    for run in ("mobilenet_v2_head", "mobilenet_v2_full"):
        m = json.load(open(os.path.join(out, "runs", run, "metrics.json")))
        assert m["epochs_completed"] == 2 and m["stopped_by"] == "early stopping"
    ckpts = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(out, "runs", "*", "checkpoints", "*"))}
    # Again: every step is found done and skipped; a run that stopped early is done too.
    again = _run(args, 600)
    assert again.returncode == 0, again.stderr[-3000:]
    # The three runs are all found done.
    assert again.stdout.count("already trained (early stopping after epoch 2)") == 3
    assert "already in" in again.stdout
    assert "epoch 1/3" not in again.stderr  # no training step ran
    assert open(os.path.join(out, "log.txt")).read().count("epoch 1/3") == log.count("epoch 1/3")
    assert {p: os.path.getmtime(p) for p in ckpts} == ckpts


@pytest.mark.slow
def test_demo_experiment_as_in_readme(tmp_path):
    """The README's first command, at full demo size (6 to 14 minutes on 2 cores)."""
    out = str(tmp_path / "demo")
    r = _run(["--config=demo", f"--out_dir={out}"], 3600)
    assert r.returncode == 0, r.stderr[-3000:]
    text = _check_outputs(out, ["mobilenet_v2_head", "mobilenet_v2_full", "efficientnet_b3_head",
                                "efficientnet_b3_full"])
    assert text.count("| mobilenet_v2 |") >= 2
    assert "## Table 3" in text and "share of the noisy-to-oracle MAE gap" in text
    t3 = json.load(open(os.path.join(out, "table3.json")))
    assert set(t3["rows"]) == {"noisy", "drop", "relabel", "oracle"}


def test_experiment_bad_run_config(tmp_path):
    r = _run(["--config=demo", f"--out_dir={tmp_path}", "--runs=nonexistent"], 120)
    assert r.returncode == 2 and "'nonexistent': no such file, and not a shipped config" in r.stderr


def test_runs_form_chains_and_the_audited_chain_stays_in_the_first_process(tmp_path):
    """The study's four runs are two chains (a head run, then the all-layers run that starts
    from it); with two at once, the chain the audit needs is trained here, the other in a
    second process; with one, all in order here."""
    from age_tf import experiment, protocol_config

    cfg = protocol_config.ExperimentConfig(out_dir=str(tmp_path), runs=(
        "mobilenet_v2_head", "mobilenet_v2_full", "efficientnet_b3_head",
        "efficientnet_b3_full", "mobilenet_v2_head@ordinal"))
    lanes = experiment.run_lanes(protocol_config.run_configs(cfg))
    assert lanes == [["mobilenet_v2_head", "mobilenet_v2_full"],
                     ["efficientnet_b3_head", "efficientnet_b3_full"],
                     ["mobilenet_v2_head_ordinal"]]
    # Each other chain where fewer runs are (the audit counts as one run here).
    assert experiment.split_lanes(lanes, "mobilenet_v2_head", 2) == (
        ["mobilenet_v2_head", "mobilenet_v2_full"],
        ["efficientnet_b3_head", "efficientnet_b3_full", "mobilenet_v2_head_ordinal"])
    assert experiment.split_lanes(lanes, "efficientnet_b3_head", 2) == (
        ["efficientnet_b3_head", "efficientnet_b3_full"],
        ["mobilenet_v2_head", "mobilenet_v2_full", "mobilenet_v2_head_ordinal"])
    assert experiment.split_lanes(lanes, "mobilenet_v2_head", 1) == (
        [n for lane in lanes for n in lane], [])
