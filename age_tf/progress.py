"""What a command's user sees while it works: each progress line once, a bar for long work.

Three things, one owner each:
  * `say(line)`: a progress line for the user, on stdout, once. It also reaches the detailed
    log (a file, or the terminal with --verbosity), but never a second time on the terminal.
  * `Bar`: long work (training steps, image checks, photos) as a bar with rate and time left
    on a terminal, redrawn in place and erased when done, as `model.fit` shows it; in a file
    or a pipe, where a redrawn line would be noise, a plain line every `interval` seconds.
  * `show_details(verbose)` / `log_to(path)`: absl's INFO log goes to the terminal only when
    asked (--verbosity / -v); a command that has an output folder keeps it there in full.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import sys
import time

from absl import logging

# A record that say() has already shown on stdout: the console handler skips it.
_SHOWN = "age_tf_shown"
_active: Bar | None = None
_quiet = 0


def say(line: str, always: bool = False) -> None:
    """Prints a progress line once (stdout) and records it in the detailed log.

    Inside `quiet()` the line goes to the detailed log only, unless `always`: a protocol's
    own steps are said, the epochs of the runs it trains are not.
    """
    if _quiet and not always:
        logging.info(line)
        return
    clear()
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    logging.info(line, extra={_SHOWN: True})


@contextlib.contextmanager
def quiet():
    """Meanwhile, say() lines of the work called go to the detailed log only."""
    global _quiet
    _quiet += 1
    try:
        yield
    finally:
        _quiet -= 1


class _NotShownTwice(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return not getattr(record, _SHOWN, False)


def clear() -> None:
    """Erases the bar being drawn, if any, before other output (it is redrawn at its next
    update)."""
    if _active is not None:
        _active.clear()


def show_details(verbose: bool) -> None:
    """Routes absl's log: INFO and up into the log (files added by log_to), and to the
    terminal only warnings, unless `verbose`. Lines already said are never shown twice.

    TensorFlow's own Python logger (e.g. "Assets written to ...") follows the same rule.
    """
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _NotShownTwice) for f in handler.filters):
        handler.addFilter(_NotShownTwice())
    if not verbose:
        logging.set_verbosity(logging.INFO)
        handler.setLevel(std_logging.WARNING)
        std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
    else:
        handler.setLevel(std_logging.NOTSET)


@contextlib.contextmanager
def log_to(path: str):
    """Writes the detailed log (INFO and up, progress lines included) to `path` meanwhile."""
    handler = std_logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(std_logging.INFO)
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = std_logging.getLogger("absl")
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Bar:
    """Progress of `total` units of work, written to `stream` (stderr by default).

    Use as a context manager, calling `update(n)` as units finish. On a terminal a bar with
    the rate and the time left is redrawn at most ten times a second and erased at the end;
    elsewhere a plain line is written every `interval` seconds (none for work shorter).
    """

    WIDTH = 24

    def __init__(self, total: int, what: str, unit: str = "images", stream=None,
                 interval: float = 30.0, terminal: bool | None = None):
        self.total, self.what, self.unit = max(int(total), 0), what, unit
        self.stream = sys.stderr if stream is None else stream
        self.terminal = (getattr(self.stream, "isatty", lambda: False)()
                         if terminal is None else terminal)
        self.interval = interval
        self.done = 0
        self.start = self._last = time.monotonic()
        self._drawn = False

    def __enter__(self) -> Bar:
        global _active
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        self.clear()
        _active = None

    def text(self) -> str:
        """`what: 120/500 images (24%), 35.2 images/s, 0:12 left`."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        left = f", {_duration((self.total - self.done) / rate)} left" if 0 < rate and \
            self.done < self.total else ""
        return (f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({share:.0%}), "
                f"{rate:,.1f} {self.unit}/s{left}")

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.terminal:
            if now - self._last >= 0.1 or self.done >= self.total:
                self._last = now
                filled = int(self.WIDTH * min(self.done / self.total, 1.0)) if self.total else 0
                bar = "#" * filled + "." * (self.WIDTH - filled)
                self.stream.write(f"\r[{bar}] {self.text()}\033[K")
                self.stream.flush()
                self._drawn = True
        elif now - self._last >= self.interval:
            self._last = now
            self.stream.write(self.text() + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Erases the bar from the terminal (say() calls this before its line)."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False
