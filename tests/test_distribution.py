"""Tests of age-tf-train's strategies: mirrored over logical CPUs, two workers, bad flags."""

import json
import os
import socket
import subprocess
import time

import pytest
from train_commands import ROOT, fingerprints, run, train_cmd

pytestmark = pytest.mark.integration  # trains models or runs the commands


@pytest.fixture(scope="module")
def data_dir(prepared):
    return prepared[0]


# Slow tier (60-67 s): the default suite's 10 minutes. The strategy's flags and refusals stay
# in the default suite; this trains one epoch on two logical CPUs.
@pytest.mark.slow
def test_mirrored_over_two_logical_cpus(data_dir, tmp_path):
    r = run(train_cmd(data_dir, str(tmp_path / "m"), "--epochs=1", "--strategy=mirrored",
                        "--num_cpu_devices=2", "--noexport"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(MirroredStrategy): 2 replica(s), global batch 16 (8 per replica)" in r.stdout


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# Two worker processes (73 s here): in the slow tier. The same custom loop runs under a
# distribution strategy in test_mirrored_over_two_logical_cpus by default.
@pytest.mark.slow
def test_two_workers_finish_with_identical_weights(data_dir, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], [tmp_path / f"worker{i}.log" for i in range(2)]
    try:
        for i in range(2):
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                            "task": {"type": "worker", "index": i}})}
            # Output to files, not pipes: a worker blocked on a full pipe would stall the
            # other at the next collective.
            with open(logs[i], "w") as log:
                procs.append(subprocess.Popen(
                    # -v=0: each worker's detailed log (its final weights) on its output.
                    train_cmd(data_dir, str(tmp_path / "mw"), "--epochs=1",
                               "--strategy=multi_worker", "--noexport", "-v=0"),
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        # Generous: two TensorFlow processes share the cores (240 s timed out on a busy host).
        deadline = time.monotonic() + 600
        for p in procs:
            p.wait(timeout=max(1, deadline - time.monotonic()))
        outs = [("", log.read_text()) for log in logs]
    finally:
        for p in procs:  # never leave a worker behind, whatever happened
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    prints = [fingerprints(err) for _, err in outs]
    assert len(prints[0]) == 1 and prints[0] == prints[1]
    assert "strategy multi_worker (CollectiveAllReduceStrategy): 2 replica(s)" in outs[0][1]
    assert os.path.exists(tmp_path / "mw" / "metrics.json")  # the chief wrote it
    assert not os.path.exists(tmp_path / "mw" / ".workers" / "worker1")  # scratch removed


# These two split the CPU into 2 logical devices, which TensorFlow allows once per process:
# each runs as its own command. Every other refusal is in REFUSALS below.
@pytest.mark.parametrize("extra, message", [
    (["--strategy=mirrored", "--num_cpu_devices=2", "--batch_size=15"],
     "--batch_size=15 is not divisible by the 2 replicas"),
    (["--strategy=mirrored", "--num_cpu_devices=2"], "TF_CONFIG is set but is not JSON"),
])
def test_bad_strategy_flags_give_clear_errors(data_dir, tmp_path, extra, message):
    env = {"TF_CONFIG": "{not json"} if "TF_CONFIG is set" in message else None
    r = run(train_cmd(data_dir, str(tmp_path / "x"), *extra), env=env)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr[-2000:]
