"""A quiet start: TensorFlow's C++ start-up lines hidden from the commands' output.

On every machine TensorFlow's runtime prints lines at import and at the first device query
that say nothing is wrong (no CUDA driver on a CPU machine, which CPU instructions the wheel
uses, absl's "before InitializeLog" notice), one of them an `E0000 ... failed call to
cuInit` that reads as an error. Environment variables cannot hide all of them (absl prints
some before it reads any), so the commands import TensorFlow and query the devices with
the process's stderr sent to a file, then replay every line that is not one of those.
A real error still shows: anything else printed meanwhile is replayed, and an exception is
raised as usual. `TF_CPP_MIN_LOG_LEVEL` set by the user, or `--verbosity`/`-v`, keeps
TensorFlow's own behaviour.
"""

from __future__ import annotations

import os
import sys
import tempfile

# What every machine prints at start-up and means nothing wrong.
STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "cudart_stub.cc",  # no CUDA driver: the CPU is used
    "cpu_feature_guard.cc",  # which CPU instructions the wheel was built for
    "To enable the following instructions:",  # ...its second line
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory", "computation placer already registered",
    "oneDNN custom operations are on",
)
# A failed cuInit is noise only where there is no NVIDIA device to initialize.
NO_GPU_NOISE = ("failed call to cuInit",)


def command_name(orig_argv: list[str]) -> str | None:
    """The age-tf command a process runs ("train" for age-tf-train or -m age_tf.cli.train)."""
    if "-m" in orig_argv[:-1]:
        module = orig_argv[orig_argv.index("-m") + 1]
        return module.rsplit(".", 1)[-1] if module.startswith("age_tf.cli.") else None
    for arg in orig_argv[:2]:
        base = os.path.basename(arg)
        if base.startswith("age-tf-"):
            return base[len("age-tf-"):]
    return None


def asked_for_details(argv: list[str]) -> bool:
    """--verbosity / -v given: the detailed log (absl's INFO, TensorFlow's) on the terminal."""
    return any(a in ("-v", "--verbosity") or a.startswith(("--verbosity=", "-v="))
               for a in argv[1:])


def _asked_for_tensorflow_logs(argv: list[str]) -> bool:
    return "TF_CPP_MIN_LOG_LEVEL" in os.environ or asked_for_details(argv)


def noise_patterns(has_gpu_device: bool | None = None) -> tuple[str, ...]:
    if has_gpu_device is None:
        has_gpu_device = os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")
    return STARTUP_NOISE + (() if has_gpu_device else NO_GPU_NOISE)


def filter_lines(lines: list[str], patterns: tuple[str, ...]) -> list[str]:
    """The lines that are not start-up noise, in order."""
    return [line for line in lines if not any(p in line for p in patterns)]


def import_tensorflow(argv: list[str] | None = None) -> None:
    """Imports TensorFlow and initializes its devices, hiding the start-up noise (see the
    module docstring). A no-op once TensorFlow is imported, or when the user asked for its
    logs."""
    argv = sys.argv if argv is None else argv
    if "tensorflow" in sys.modules or _asked_for_tensorflow_logs(argv):
        return
    # Later INFO lines of the C++ runtime (e.g. tf.data's "End of sequence" at each epoch's
    # end) are noise too; warnings and errors still show.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = filter_lines(text.splitlines(keepends=True), noise_patterns())
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
