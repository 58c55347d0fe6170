"""Tests for age_tf.cli.quiet: TensorFlow's start-up noise hidden, real errors shown."""

import os
import subprocess
import sys

import pytest

from age_tf.cli import quiet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine\n",
    "I0000 00:00:1.0 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n",
    "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
]
REAL = "E0000 00:00:1.0 1 some_op.cc:9] Could not load libcudnn.so.9: no such file\n"


def test_filter_keeps_real_errors_and_drops_startup_noise():
    assert quiet.filter_lines(NOISE + [REAL], quiet.noise_patterns(has_gpu_device=False)) == [REAL]
    # On a machine with an NVIDIA device a failed cuInit is a real problem: it shows.
    kept = quiet.filter_lines(NOISE, quiet.noise_patterns(has_gpu_device=True))
    assert kept == [NOISE[3]]


@pytest.mark.parametrize("argv, name", [
    (["python", "-m", "age_tf.cli.train", "--epochs=1"], "train"),
    (["/usr/bin/python3", "/venv/bin/age-tf-predict", "x.jpg"], "predict"),
    (["python", "-m", "pytest"], None),
    (["python", "tests/cli_batch.py"], None),
])
def test_command_name(argv, name):
    assert quiet.command_name(argv) == name


FAKE_TF = '''
import os
os.write(2, b"""{noise}""")
os.write(2, b"""{real}""")

class config:
    initialized = False

    @staticmethod
    def list_physical_devices():  # like TensorFlow, prints at the first device query only
        if not config.initialized:
            os.write(2, b"late noise: cudart_stub.cc:31] no driver\\n")
            config.initialized = True
        return []
'''


def _with_fake_tensorflow(tmp_path, env_extra=None, argv=()):
    pkg = tmp_path / "tensorflow"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(FAKE_TF.format(noise="".join(NOISE[:3]), real=REAL))
    code = ("import sys; from age_tf.cli import quiet; "
            f"quiet.import_tensorflow(['prog', *{list(argv)!r}]); "
            # then as the commands' modules do:
            "import tensorflow as tf; tf.config.list_physical_devices(); "
            "print('imported', flush=True)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)


def test_a_real_error_printed_at_import_still_shows(tmp_path):
    r = _with_fake_tensorflow(tmp_path)
    assert r.returncode == 0 and r.stdout == "imported\n"
    assert r.stderr == REAL  # the noise (at import and at the device query) is gone


@pytest.mark.parametrize("env, argv", [({"TF_CPP_MIN_LOG_LEVEL": "0"}, ()), ({}, ("-v=1",))])
def test_asking_for_tensorflow_logs_keeps_them(tmp_path, env, argv):
    r = _with_fake_tensorflow(tmp_path, env, argv)
    assert "cudart_stub.cc" in r.stderr and REAL in r.stderr


# One command that only reads its flags, one that builds models and computes (TensorFlow
# initialized and used, as by training).
@pytest.mark.integration
@pytest.mark.parametrize("argv, code, shows", [
    (["age_tf.cli.evaluate", "--helpshort"], 0, "--model_dir: (required)"),
    (["age_tf.cli.models", "--backbones=mobilenet_v2", "--sizes=32"], 0, "| mobilenet_v2 | 32 |"),
])
def test_a_command_starts_without_tensorflow_startup_lines(tmp_path, argv, code, shows):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == code and shows in r.stdout, r.stderr[-2000:]
    for pattern in quiet.noise_patterns():
        assert pattern not in r.stderr, r.stderr
