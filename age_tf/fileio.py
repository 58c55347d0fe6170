"""Atomic file writes: a kill at any moment leaves the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename.

    The temporary name keeps the whole extension (".weights.h5", ".keras", ".png"), which
    writers such as Keras and matplotlib check; on an exception it is removed.
    """
    folder, base = os.path.split(path)
    stem, dot, ext = base.partition(".")
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{dot}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Writes text to path atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def check_writable_dir(path: str, flag: str, flag_value: str | None = None) -> None:
    """Refuses, before any work, a folder that cannot be made or written.

    Args:
      flag, flag_value: the flag the folder comes from, and its value when the folder is
        derived from it (e.g. <model_dir>/eval); named in the error.

    Raises:
      ValueError: the path is a file, or the folder (or the nearest existing parent it would
        be made in) is not writable.
    """
    shown = f"--{flag}={path!r}" if flag_value is None else f"--{flag}={flag_value!r}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{shown}: {path} is a file, not a folder; give a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{shown}: {existing} is not writable; choose a folder you can write")


def check_new_file(path: str, flag: str, overwrite: bool, also: tuple[str, ...] = ()) -> None:
    """Refuses, before any work, to replace an existing output (or the files written beside
    it, `also`) unless --overwrite was given; and a folder where a file is meant.

    Raises:
      ValueError: naming the flag, the file and the two ways on.
    """
    if os.path.isdir(path):
        raise ValueError(f"--{flag}={path!r} is a folder; name the file to write")
    existing = [p for p in (path, *also) if os.path.exists(p)]
    if existing and not overwrite:
        raise ValueError(f"--{flag}={path!r}: {', '.join(existing)} already exist"
                         f"{'s' if len(existing) == 1 else ''}; pass --overwrite to replace, "
                         "or choose another name")
    check_writable_dir(os.path.dirname(os.path.abspath(path)), flag, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # alive, another user's
    return True


def remove_stale_temp_dirs(folder: str, prefix: str) -> list[str]:
    """Deletes `<prefix><pid>-*` folders in `folder` whose process is gone (a kill -9 in the
    middle of a write); a live process's folder is left alone. Returns what it removed."""
    removed = []
    for name in os.listdir(folder):
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        removed.append(name)
    return removed


def write_files(root: str, items) -> int:
    """Writes (relative path, bytes) pairs under root, making folders; a None body is
    skipped (a file the data lists but does not have). Returns the files written."""
    written = 0
    for rel, body in items:
        if body is None:
            continue
        dest = os.path.join(root, rel)
        os.makedirs(os.path.dirname(dest) or root, exist_ok=True)
        with open(dest, "wb") as f:
            f.write(body)
        written += 1
    return written
