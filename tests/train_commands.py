"""The tiny age-tf-train command the training and distribution tests run as a user does."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny and fast: 32 px, 16 images a batch, a few steps, full tuning from scratch.
TINY = ["--config=demo", "--image_size=32", "--batch_size=16", "--tune=full",
        "--bn_momentum=0.9", "--steps_per_epoch=4", "--cache="]


def train_cmd(data_dir, model_dir, *extra):
    return [sys.executable, "-m", "age_tf.cli.train", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", *TINY, *extra]


def run(cmd, timeout=300, env=None):
    """Runs cmd from the repository root, without the caller's TF_CONFIG unless env sets it."""
    full_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def fingerprints(text):
    """The final weights fingerprints a training logged (one per worker)."""
    return [line.rsplit(": ", 1)[1].strip() for line in text.splitlines()
            if "final weights fingerprint" in line]
