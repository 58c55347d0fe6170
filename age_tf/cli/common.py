"""The one skeleton of every console script: flags from a config dataclass, --help that
lists them, configs by name or path, quiet output, clear one-line errors.

A command module is its docstring, a `Command` and a body:

    COMMAND = common.Command(__name__, prepare.PrepareConfig, required=("out_dir",))

    def main(cfg, args):           # the parsed, checked config; positional arguments
        return prepare.summary(cfg, prepare.prepare(cfg))   # printed, if not None

    run = COMMAND.entry_point(main)    # the console script; also `python -m` runs it
"""

from __future__ import annotations

import errno
import os
import sys
import textwrap

from absl import app, flags

from age_tf import config, progress
from age_tf.cli import quiet
from age_tf.errors import DataError

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


HELP_ARGS = ("--help", "-h", "-?", "--helpshort")


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=96, initial_indent=indent,
                         subsequent_indent=indent)


class Command:
    """A console script: its flags (one per field of `config_class`), their help, and how
    its body is run.

    Args:
      module: the command module's __name__ (its docstring is the help's first part).
      config_class: the dataclass the flags are generated from.
      required: flags that must be given.
      exclude: fields that get no flag (the command sets them).
      args: what positional arguments it takes (e.g. "PHOTO..."); None: none.
      tensorflow: its work uses TensorFlow (imported quietly once the flags are read; the
        library modules it needs are imported inside the body, never at the command's top).
    """

    def __init__(self, module: str, config_class, required: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = (), args: str | None = None,
                 tensorflow: bool = True):
        self.module, self.config_class = module, config_class
        self.required, self.exclude, self.args = tuple(required), tuple(exclude), args
        self.tensorflow = tensorflow
        self.specs = config.define_flags(config_class, required=self.required,
                                         exclude=self.exclude, module_name=module)

    def config(self):
        """The config the parsed flags describe, checked (its validate(), if it has one)."""
        cfg = config.from_flags(self.config_class, exclude=self.exclude)
        if hasattr(cfg, "validate"):
            cfg.validate()  # every flag checked before any work
        return cfg

    def flags_text(self) -> str:
        """The resolved flags, one per line (written next to a run's outputs)."""
        return config.flags_text(self.specs)

    def program(self) -> str:
        """The console script's name: age_tf.cli.cross_dataset -> age-tf-cross-dataset (also
        when the module runs as `python -m age_tf.cli.cross_dataset`, as __main__)."""
        spec = getattr(sys.modules.get(self.module), "__spec__", None)
        name = spec.name if spec is not None else self.module
        return "age-tf-" + name.rsplit(".", 1)[-1].replace("_", "-")

    def help_text(self, prog: str) -> str:
        """The command's docstring, then its flags grouped by the config that owns them."""
        doc = (sys.modules[self.module].__doc__ or "").strip()
        usage = f"USAGE: {prog} [--config=NAME] [flags]" + (f" {self.args}" if self.args else "")
        out = [doc, "", usage]
        groups: dict = {}
        for s in self.specs:
            groups.setdefault(s.group, []).append(s)
        for group, specs in groups.items():
            title = (group.__doc__ or "").strip().splitlines()[0] if group else ""
            out += ["", f"{group.__name__}: {title}" if title else f"{group.__name__}:"]
            for s in specs:
                out.append(f"  --{s.name}{self._shape(s)}")
                out.append(_wrap(s.help, "      "))
        out += ["", "Every command:",
                "  --config: " + flags.FLAGS["config"].help,
                "  --verbosity / -v: also show the detailed log (and TensorFlow's) on the "
                "terminal, e.g. -v=0",
                "  --helpfull: absl's and TensorFlow's flags too"]
        return "\n".join(out) + "\n"

    def _shape(self, s: config.FlagSpec) -> str:
        if s.name in self.required:
            return ": (required)"
        if s.kind == "enum":
            return f": {'|'.join(map(str, s.choices))} (default: {s.default})"
        if s.kind == "bool":
            return f" / --no{s.name} (default: {str(s.default).lower()})"
        if s.default is None or s.default == "" or s.default == ():
            return ""
        shown = ",".join(map(str, s.default)) if isinstance(s.default, tuple) else s.default
        return f" (default: {shown})"

    def entry_point(self, body):
        """The console script's function: parses the flags, runs `body(cfg, args)` and
        prints what it returns; bad input ends it with its message and exit code 2.

        A module run as a script (`python -m age_tf.cli.train`) is run at once: this is the
        `if __name__ == "__main__"` of every command, written once.
        """

        def main(argv):
            progress.show_details(quiet.asked_for_details(sys.argv))
            if len(argv) > 1 and self.args is None:
                raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
            try:
                cfg = self.config()
                if self.tensorflow:  # before the body's imports load it with its noise
                    quiet.import_tensorflow()
                result = body(cfg, argv[1:])
            except Exception as e:  # only the expected kinds end here; the rest is raised
                if _expected(e):
                    _fail(e)
                raise
            if result is not None:
                write(sys.stdout, result if result.endswith("\n") else result + "\n")

        def run() -> None:
            if any(a in HELP_ARGS for a in sys.argv[1:]):
                write(sys.stdout, self.help_text(self.program()))
                sys.exit(0)
            try:
                argv = config.expand_flagfiles(sys.argv)
            except (ValueError, OSError) as e:
                _fail(e)
            app.run(main, argv=argv)

        if self.module == "__main__":
            run()
        return run

