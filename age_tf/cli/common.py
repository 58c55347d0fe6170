"""Shared plumbing for the absl entry points: configs by name or path, clear one-line errors."""

from __future__ import annotations

import errno
import os
import sys

from absl import app, flags, logging

from age_tf import config
from age_tf.data.metadata import DataError

# Read and expanded before absl parses (config.expand_flagfiles); defined for --help only.
flags.DEFINE_string("config", None, "A shipped config by name (e.g. demo, study) or a flagfile "
                    "path; flagfiles include others relative to themselves. Later flags override it.")

# TensorFlow's errors for a full disk or a refused write, by name: synth and prepare never
# import TensorFlow, so its classes cannot be named before it is loaded.
_TF_ERRORS = {"ResourceExhaustedError": "the disk or memory is full: free some and run the "
                                        "same command again",
              "PermissionDeniedError": "no permission: make it writable, or choose another "
                                       "folder"}


def message(e: BaseException) -> str:
    """The one line a user reads for an expected failure: the error's text (it names the
    file or flag), plus what to do when an operating-system error does not say it."""
    if isinstance(e, PermissionError):
        return f"{e} (no permission: make it writable, or choose another folder)"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC and "free space" not in str(e):
        return f"{e} (the disk is full: free space and run the same command again)"
    if isinstance(e, OSError) and e.errno == errno.EROFS:
        return f"{e} (a read-only file system: choose a folder you can write)"
    hint = _TF_ERRORS.get(type(e).__name__)
    if hint and type(e).__module__.startswith("tensorflow"):
        return f"{str(getattr(e, 'message', e)).splitlines()[0]} ({hint})"
    return str(e)


def _expected(e: BaseException) -> bool:
    if isinstance(e, (DataError, ValueError, OSError, MemoryError)):
        return True
    return type(e).__name__ in _TF_ERRORS and type(e).__module__.startswith("tensorflow")


def _fail(e: BaseException) -> None:
    prog = os.path.basename(sys.argv[0])
    print(f"{prog}: error: {message(e)}", file=sys.stderr)  # once: not also through logging
    sys.exit(2)


def write(stream, text: str) -> None:
    """Writes text whatever the stream's encoding: a file name that is not valid in it (a
    non-UTF-8 name under a UTF-8 locale) comes out as its own bytes, or escaped, never as an
    error that loses every other line."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        data = text.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode(encoding, "backslashreplace")
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode(encoding, "replace"))
    else:
        stream.flush()
        buffer.write(data)
        buffer.flush()


def run(main) -> None:
    """Runs an absl main; bad input ends the program with its message and exit code 2."""

    def wrapped(argv):
        logging.set_verbosity(logging.INFO)
        try:
            return main(argv)
        except Exception as e:  # only the expected kinds end here; the rest is raised
            if _expected(e):
                _fail(e)
            raise

    try:
        argv = config.expand_flagfiles(sys.argv)
    except (ValueError, OSError) as e:
        _fail(e)
    app.run(wrapped, argv=argv)


def no_positional_args(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
