"""The floor under the protocols (age-tf-experiment, age-tf-benchmark): their numbered steps
and time table, training one run, and work done in a second process at the same time."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_lib
import threading
import time
import traceback

import keras

from age_tf import parallel, progress
from age_tf.evaluate import evaluation
from age_tf.train import train_config, training
from age_tf.train.run_dir import RunDir, is_done, run_status


class Steps:
    """The experiment's numbered steps, each said once with the time since the start."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self._lock = threading.Lock()  # lines of runs trained in another process come too
        self.times: list[tuple[str, float]] = []  # (step, its seconds)
        self.runs: dict[str, dict[str, float]] = {}  # run -> seconds per part of its work

    def step(self, what: str) -> None:
        with self._lock:
            self.done += 1
            now = time.monotonic() - self.start
            self.times.append((what, now - sum(t for _, t in self.times)))
            progress.say(f"[{self.done}/{self.total} {now:5.0f}s] {what}", always=True)

    def time_table(self) -> str:
        """Where the time went: each step, then each run's parts (metrics.json's seconds and
        its evaluation): the log's profile of the protocol."""
        lines = ["seconds  step"] + [f"{t:7.1f}  {what[:90]}" for what, t in self.times]
        parts = sorted({k for r in self.runs.values() for k in r},
                       key=["inputs", "train", "intervals", "save", "export", "evaluate"].index)
        if self.runs:
            lines += ["", "run".ljust(36) + "".join(f"{p:>10}" for p in parts)]
            lines += [name.ljust(36) + "".join(
                f"{r[p]:10.1f}" if p in r else f"{'-':>10}" for p in parts)
                for name, r in self.runs.items()]
        return "\n".join(lines)


def train_once(rc: train_config.TrainConfig, name: str, strategy, say) -> dict[str, float]:
    """Trains a run unless it is done (its own checkpointed state: all epochs, or stopped
    early); `say` (a step's, or the log's) gets one line either way. Returns the seconds
    of each part of the training ({} when it was done before)."""
    run = RunDir(rc.model_dir)
    if is_done(run):
        status = run_status(run)
        say(f"{name}: already trained ({status['reason']} after epoch {status['epoch']})")
        return {}
    keras.backend.clear_session()
    m = training.train_and_evaluate(rc, strategy)
    say(f"trained {name}: best epoch {m['best_epoch']}, val MAE "
        f"{m['val']['mae_years']:.2f} years, SROCC {m['val']['srocc']:.4f}")
    return dict(m.get("seconds", {}))


def evaluate_timed(ecfg: evaluation.EvaluateConfig, times: dict[str, float]) -> dict:
    """evaluation.evaluate, its seconds added to `times` (a run's row of the time table)."""
    started = time.monotonic()
    result = evaluation.evaluate(ecfg)
    times["evaluate"] = time.monotonic() - started
    return result


def parallel_runs(asked: int, strategy) -> int:
    """--parallel_runs if given (`asked`), else 2 on a machine with two cores or more, no GPU
    and a one-device strategy (a GPU is one device two trainings would share), else 1."""
    if asked:
        return asked
    import tensorflow as tf

    # None: each run makes its own from its config (the library call's default).
    one_device = strategy is None or (strategy.num_replicas_in_sync == 1 and not isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy))
    cpu_only = not tf.config.list_physical_devices("GPU")
    return 2 if one_device and cpu_only and (os.cpu_count() or 1) >= 2 else 1


@contextlib.contextmanager
def elsewhere(task: str, items: list, args: tuple, steps: Steps, log_path: str):
    """Runs task(item, *args, say=...) for each item, in order, in a spawned process while
    the body runs here; its lines join `steps` as they come (say), its results fill the
    yielded dict {item: result} (picklable). Leaving waits for it; its failure is raised
    here. No items: nothing is started.

    Args:
      task: "module:function", imported in the child after its stderr goes to log_path.
    """
    results: dict = {}
    if not items:
        yield results
        return
    messages = multiprocessing.get_context("spawn").Queue()
    worker = parallel.start_logged("age_tf.protocol:_worker",
                                   (task, list(items), args, messages, log_path), log_path)
    failure: list[str] = []

    def forward():
        while True:
            try:
                kind, *rest = messages.get(timeout=1.0)
            except queue_lib.Empty:
                if worker.is_alive():
                    continue
                return  # ended without a word (killed): its exit code says it
            if kind == "step":
                steps.step(rest[0])
            elif kind == "result":
                results[rest[0]] = rest[1]
            else:
                failure.extend(rest)
                return

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    try:
        yield results
        reader.join()
        worker.join()
    except BaseException:
        worker.terminate()
        raise
    what = f"{task.rpartition(':')[2]} of {', '.join(map(str, items))} in a second process"
    if failure and failure[0] != "done":
        raise RuntimeError(f"{what} failed: {failure[0]}\n{failure[1]}")
    if worker.exitcode:
        raise RuntimeError(f"{what} ended with exit code {worker.exitcode} (see {log_path})")


def _worker(task: str, items: list, args: tuple, messages, log_path: str) -> None:
    """The second process: each item's work, its lines and results sent to the first."""
    import importlib

    try:
        module, _, name = task.partition(":")
        fn = getattr(importlib.import_module(module), name)
        with progress.log_to(log_path), progress.quiet():
            for item in items:
                result = fn(item, *args, say=lambda line: messages.put(("step", line)))
                messages.put(("result", item, result))
        messages.put(("done",))
    except BaseException as e:  # noqa: BLE001  (whatever it is, the first process says it)
        messages.put(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
        raise


_strategies: dict = {}


def strategy_here(name: str):
    """This process's strategy of that name (a second process makes its own, once)."""
    if name not in _strategies:
        from age_tf.train import distribution

        _strategies[name] = distribution.get_strategy(name)
    return _strategies[name]
