"""Shared plumbing for the absl entry points: configs by name or path, clear one-line errors."""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from age_tf import config
from age_tf.data.metadata import DataError

# Read and expanded before absl parses (config.expand_flagfiles); defined for --help only.
flags.DEFINE_string("config", None, "A shipped config by name (e.g. demo, study) or a flagfile "
                    "path; flagfiles include others relative to themselves. Later flags override it.")


def _fail(e: Exception) -> None:
    prog = os.path.basename(sys.argv[0])
    logging.error("%s", e)
    print(f"{prog}: error: {e}", file=sys.stderr)
    sys.exit(2)


def run(main) -> None:
    """Runs an absl main; bad input ends the program with its message and exit code 2."""

    def wrapped(argv):
        logging.set_verbosity(logging.INFO)
        try:
            return main(argv)
        except (DataError, ValueError, FileNotFoundError, MemoryError) as e:
            _fail(e)

    try:
        argv = config.expand_flagfiles(sys.argv)
    except (ValueError, OSError) as e:
        _fail(e)
    app.run(wrapped, argv=argv)


def no_positional_args(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
