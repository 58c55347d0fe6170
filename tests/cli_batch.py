"""Runs several invocations of one age_tf command in ONE process and reports each one's exit
code and standard error, as JSON on stdout.

For tests of refusals: each separate `python -m age_tf.cli.X` pays TensorFlow's import
(~5 s) to print one line; here a dozen cases pay it once. Each case still goes through the
command's own entry point (config expansion, absl parsing, error handling and exit code),
with its flags reset to their defaults first. Cases that split the CPU into logical devices
cannot share a process (TensorFlow's devices are configured once), so they are not for this.

  python tests/cli_batch.py age_tf.cli.train cases.json
  cases.json: [{"argv": ["--data_dir=...", ...], "env": {"TF_CONFIG": "..."}}, ...]
"""

import contextlib
import importlib
import io
import json
import os
import sys


def main() -> None:
    module = importlib.import_module(sys.argv[1])
    with open(sys.argv[2]) as f:
        cases = json.load(f)
    from absl import flags

    results = []
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    for case in cases:
        flags.FLAGS.unparse_flags()  # every flag back to its default, as in a new process
        os.environ.clear()
        os.environ.update({**base_env, **case.get("env", {})})
        sys.argv = [sys.argv[0], *case["argv"]]
        err = io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err):
            try:
                module.run()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception as e:  # noqa: BLE001 - reported as a crash, like a process would
                print(f"{type(e).__name__}: {e}", file=sys.stderr)
                code = 1
        results.append({"code": code, "stderr": err.getvalue()})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
