"""Work split over spawned processes (light workers: no TensorFlow in them)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import sys
from typing import Callable, Iterable


@contextlib.contextmanager
def main_hidden_from_children():
    """While spawned workers start, the parent's __main__ is hidden from them.

    A spawned worker imports the parent's main module before it runs anything; for a
    command (age-tf-experiment, or -m age_tf.cli.X) that is the whole command, TensorFlow
    included: seconds, hundreds of MB and TensorFlow's start-up lines per worker, for
    functions that need none of it. Hidden, a worker imports only the module of the
    function it runs.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if main and k in main.__dict__}
    try:
        if main is not None:
            main.__spec__ = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def map_in_processes(fn: Callable, items: list, workers: int,
                     on_done: Callable[[int], None] | None = None) -> list:
    """[fn(item) for item in items], over `workers` spawned processes when that pays.

    spawn, not fork: the parent may already hold TensorFlow's threads, and forking those
    can deadlock. One process (or one item) runs in this process: a spawned worker costs
    about a second of imports.

    Args:
      fn: a module-level function (workers import it by name).
      on_done: called with each item's position as it finishes (progress logging).

    Returns:
      The results in the order of `items`.
    """
    results: list = [None] * len(items)
    if workers <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            if on_done:
                on_done(i)
        return results
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        with main_hidden_from_children():  # workers start at the first submits
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done:
                on_done(i)
    return results


def chunked(items: Iterable, size: int) -> list[list]:
    """items in consecutive lists of `size` (the last may be shorter)."""
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def start_logged(target: str, args: tuple, log_path: str):
    """Starts `target` ("module:function") in a spawned process whose stderr (and that of
    what it imports: TensorFlow's start-up lines among them) goes to log_path; returns the
    started multiprocessing.Process.

    The target is named, not passed: the child redirects its stderr before importing it.
    """
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(target=_logged_call, args=(target, args, log_path), daemon=True)
    with main_hidden_from_children():
        process.start()
    return process


def _logged_call(target: str, args: tuple, log_path: str) -> None:
    import importlib
    import os

    log = open(log_path, "a")
    os.dup2(log.fileno(), 2)
    module, _, function = target.partition(":")
    getattr(importlib.import_module(module), function)(*args)
