"""Shared plumbing for the absl entry points: clear one-line errors instead of tracebacks."""

from __future__ import annotations

import os
import sys

from absl import app, logging

from age_tf.data.metadata import DataError


def run(main) -> None:
    """Runs an absl main; bad input ends the program with its message and exit code 2."""

    def wrapped(argv):
        logging.set_verbosity(logging.INFO)
        try:
            return main(argv)
        except (DataError, ValueError, FileNotFoundError) as e:
            prog = os.path.basename(sys.argv[0])
            logging.error("%s", e)
            print(f"{prog}: error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(wrapped)


def no_positional_args(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
