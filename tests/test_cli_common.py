"""The commands' shared error handling and output: one line per error, no traceback, and
output that survives file names the terminal's encoding cannot show."""

import dataclasses
import errno
import io
import sys

import pytest

from age_tf import config
from age_tf.cli import common


@dataclasses.dataclass
class _Config:
    """A command's options for these tests."""

    cli_common_out: str = config.field(None, "Where it writes.")


_COMMAND = common.Command(__name__, _Config)


def _run_main(monkeypatch, capsys, error):
    def main(cfg, args):
        raise error

    monkeypatch.setattr(sys, "argv", ["age-tf-x"])
    with pytest.raises(SystemExit) as e:
        _COMMAND.entry_point(main)()
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("error, says", [
    (ValueError("--flag=3: must be >= 4"), "--flag=3: must be >= 4"),
    (PermissionError(errno.EACCES, "Permission denied", "/runs/x/config.json"),
     "/runs/x/config.json' (no permission: make it writable, or choose another folder)"),
    (OSError(errno.ENOSPC, "No space left on device", "/runs/x"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/run"), "read-only file system"),
    (FileExistsError(errno.EEXIST, "File exists", "/data/out"), "/data/out"),
])
def test_an_expected_error_is_one_line_once_with_exit_2(monkeypatch, capsys, error, says):
    # Hostile-input items 11 and 12: no traceback, and not printed twice (absl logging too).
    code, err = _run_main(monkeypatch, capsys, error)
    assert code == 2 and says in err
    assert err.count("error:") == 1 and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_bug_still_shows_its_traceback(monkeypatch, capsys):
    with pytest.raises(KeyError):
        _run_main(monkeypatch, capsys, KeyError("a bug"))


def test_a_name_the_encoding_cannot_show_loses_no_line():
    # Hostile-input item 2: a non-UTF-8 file name under a strict UTF-8 stdout.
    name = b"bad\xff.jpg".decode("utf-8", "surrogateescape")
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    common.write(stream, f"{name}: 31.0 years\ngood.jpg: 40.0 years\n")
    assert raw.getvalue() == b"bad\xff.jpg: 31.0 years\ngood.jpg: 40.0 years\n"
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    common.write(stream, f"{name} \u00e9: 1\nnext\n")
    assert raw.getvalue() == b"bad\\udcff.jpg \\xe9: 1\nnext\n"
