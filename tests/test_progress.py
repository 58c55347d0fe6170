"""Tests for age_tf.progress: lines said once, bars on a terminal, plain lines elsewhere."""

import io
import logging as std_logging
import sys

import pytest
from absl import logging

from age_tf import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_not_on_a_terminal_the_bar_writes_plain_lines():
    out = io.StringIO()  # a file or a pipe: isatty() is False
    with progress.Bar(3, "checking images", stream=out, interval=0) as bar:
        for _ in range(3):
            bar.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "\033" not in out.getvalue()
    assert lines[0].startswith("checking images: 1/3 images (33%), ")
    assert "images/s" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("checking images: 3/3 images (100%)")
    assert "left" not in lines[-1]


def test_not_on_a_terminal_short_work_writes_nothing():
    out = io.StringIO()
    with progress.Bar(1000, "photos", unit="photos", stream=out) as bar:  # 30 s interval
        bar.update(1000)
    assert out.getvalue() == ""


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_erased():
    out = _Terminal()
    with progress.Bar(2, "epoch 1/3", unit="steps", stream=out) as bar:
        bar.update()
        bar.update()
    text = out.getvalue()
    assert "\n" not in text  # never a new line: one line redrawn
    assert text.count("\r[") >= 1 and "epoch 1/3: 2/2 steps (100%)" in text
    assert text.endswith("\r\033[K")  # erased when done


@pytest.fixture
def absl_console(monkeypatch, capsys):
    """absl's handler on the absl logger, as in a command, writing to the captured stderr
    (once the flags are parsed, by an earlier test's command, it writes to its own stream)."""
    handler = logging.get_absl_handler()
    monkeypatch.setattr(handler.python_handler, "stream", sys.stderr)
    old_level = handler.level
    std_logging.getLogger("absl").addHandler(handler)
    yield
    std_logging.getLogger("absl").removeHandler(handler)
    handler.setLevel(old_level)
    logging.set_verbosity(logging.WARNING)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_progress_line_is_shown_once(absl_console, capsys, tmp_path, verbose):
    if verbose:
        logging.set_verbosity(logging.INFO)  # what absl does with -v=0
    progress.show_details(verbose)
    log = tmp_path / "log.txt"
    with progress.log_to(str(log)):
        progress.say("[1/2   3s] prepared")
        logging.info("a detail")
        with progress.quiet():
            progress.say("epoch 1/6: loss 0.1")  # a run inside a protocol: log only
            progress.say("[2/2   5s] trained", always=True)
    captured = capsys.readouterr()
    assert captured.out == "[1/2   3s] prepared\n[2/2   5s] trained\n"
    console = captured.err
    assert "prepared" not in console and "trained" not in console  # never a second time
    assert ("a detail" in console) == verbose and ("epoch 1/6" in console) == verbose
    text = log.read_text()
    for line in ("prepared", "a detail", "epoch 1/6: loss 0.1", "trained"):
        assert text.count(line) == 1, (line, text)
