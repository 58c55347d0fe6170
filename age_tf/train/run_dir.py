"""A run folder as one object: its paths, its checkpointed state, and what may resume it.

Every module that reads or writes a run (training, evaluation, audit, report, serving) names
its files through `RunDir`, so a file's place is written once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import time

import pandas as pd

from age_tf import export_format
from age_tf.data import prepared


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one age-tf-train run directory."""

    root: str

    def _(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def config(self) -> str:  # the run's TrainConfig (+ data fingerprint), JSON
        return self._("config.json")

    @property
    def log(self) -> str:  # the detailed log of every training command run here
        return self._("log.txt")

    @property
    def flags(self) -> str:  # the resolved command-line flags
        return self._("flags.txt")

    @property
    def history(self) -> str:  # one row per epoch
        return self._("history.csv")

    @property
    def checkpoints(self) -> str:  # weights, optimizer and RunState per epoch
        return self._("checkpoints")

    @property
    def best(self) -> str:  # the best epoch's weights so far, named by epoch
        return self._("best")

    @property
    def best_weights(self) -> str:  # the selected weights of a finished run
        return self._("best.weights.h5")

    @property
    def logs(self) -> str:  # TensorBoard
        return self._("logs")

    @property
    def metrics(self) -> str:  # the selected epoch's validation figures
        return self._("metrics.json")

    @property
    def model_keras(self) -> str:  # the trained model itself, selected weights
        return self._("model.keras")

    @property
    def intervals(self) -> str:  # the interval calibration (validation residuals)
        return self._("intervals.json")

    @property
    def decisions(self) -> str:  # validation (label, prediction) pairs that calibrate decisions
        return self._("decisions.json")

    @property
    def export(self) -> str:  # the SavedModel
        return self._(export_format.EXPORT_FOLDER)

    @property
    def card(self) -> str:  # the model card, inside the export
        return export_format.card_path(self.export)

    @property
    def eval(self) -> str:  # age-tf-evaluate's outputs
        return self._("eval")

    @property
    def eval_metrics(self) -> str:  # the test evaluation's figures
        return self._("eval", "metrics.json")

    @property
    def eval_predictions(self) -> str:  # one row per evaluated image
        return self._("eval", "predictions.csv")

    def eval_on(self, data_dir: str) -> str:
        """age-tf-evaluate's outputs for a prepared folder that is not the run's own (named
        by the folder, so evaluations on different sets never overwrite each other)."""
        name = os.path.basename(os.path.abspath(data_dir)) or "data"
        tag = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:6]
        return self._("eval", "other", f"{name}-{tag}")

    @property
    def audit(self) -> str:  # age-tf-audit's outputs
        return self._("audit")

    def worker(self, worker_id: str) -> RunDir:
        """A non-chief worker's private scratch folder (MultiWorkerMirroredStrategy needs
        every worker to save; only the chief writes the run's files)."""
        return RunDir(self._(".workers", worker_id))

    def read_config(self) -> dict:
        """config.json of the run.

        Raises:
          FileNotFoundError: the run has none (not an age-tf-train run directory).
        """
        if not os.path.exists(self.config):
            raise FileNotFoundError(f"{self.config} not found: {self.root} is not an "
                                    "age-tf-train run directory")
        with open(self.config) as f:
            return json.load(f)

    def read_calibration(self) -> dict | None:
        """intervals.json: the served intervals' calibration (None: a run from before them)."""
        return self._read_json(self.intervals)

    def read_decisions(self) -> dict | None:
        """decisions.json: the validation pairs that calibrate decisions at thresholds (None:
        a run from before them)."""
        return self._read_json(self.decisions)

    @staticmethod
    def _read_json(path: str, max_bytes: int = 64 << 20) -> dict | None:
        """A JSON object the run wrote, or None where it has none.

        Raises:
          ValueError: too large, not JSON, or not an object (names the file).
        """
        if not os.path.exists(path):
            return None
        if os.path.getsize(path) > max_bytes:
            raise ValueError(f"{path}: larger than any file a run writes ({max_bytes >> 20} MB)")
        try:
            with open(path) as f:
                data = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: not readable JSON ({e}); train the run again") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON object; train the run again")
        return data

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint whose state can be read (see checkpoint_paths)."""
        import tensorflow as tf  # the commands' --help does not load it (run_dir is light)

        for path in self.checkpoint_paths():
            try:
                read_state(path)
                return path
            except (tf.errors.OpError, ValueError, IndexError):
                continue
        return None

    def checkpoint_paths(self) -> list[str]:
        """Every checkpoint in the folder, newest first, from the files themselves: a
        damaged `checkpoint` index file cannot hide them (and restart the run at epoch 1)."""
        found = []
        for index in glob.glob(os.path.join(glob.escape(self.checkpoints), "ckpt-*.index")):
            m = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(index))
            if m:
                found.append((int(m.group(1)), index[:-len(".index")]))
        return [path for _, path in sorted(found, reverse=True)]

    def remove_partial_writes(self) -> list[str]:
        """Deletes what an interrupted save leaves (a checkpoint's `_temp` folder, a half
        export); returns what it removed. Only at the start of a run that holds the lock."""
        removed = []
        for path in (glob.glob(os.path.join(glob.escape(self.checkpoints), "*_temp*"))
                     + [self._("export.tmp")]):
            if os.path.exists(path):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                removed.append(path)
        return removed

    @contextlib.contextmanager
    def lock(self):
        """Holds the run folder for one training process; a second one is refused.

        An flock: the kernel releases it when the process ends, also by kill -9, so a crashed
        run never leaves the folder locked.

        Raises:
          RunLocked: another process holds it (its pid, host and start are named).
        """
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self._(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "unknown"
                raise RunLocked(f"--model_dir={self.root} is being trained by another process "
                                f"({holder}); wait for it to end, or use another "
                                "--model_dir") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
            yield
        finally:
            os.close(fd)


class RunLocked(ValueError):
    """The run folder is held by another training process."""


def read_state(checkpoint_path: str) -> dict:
    """The RunState values stored in one checkpoint (ints), read without building a model."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_path)
    return {name: int(reader.get_tensor(f"state/{name}/.ATTRIBUTES/VARIABLE_VALUE"))
            for name in ("epoch", "finished", "best_epoch")}


class StopReason(enum.IntEnum):
    """Why a run stopped, as checkpointed in RunState.finished."""

    RUNNING = 0
    ALL_EPOCHS = 1
    EARLY_STOPPING = 2

    @property
    def text(self) -> str:
        return {0: "running", 1: "all epochs done", 2: "early stopping"}[int(self)]


def run_status(run: RunDir) -> dict:
    """The run's state from its latest checkpoint, without building the model.

    Returns:
      {"epoch": completed epochs, "finished": bool, "reason": str, "best_epoch": 0-based or
      -1}; epoch 0 and not finished when there is no checkpoint.
    """
    path = run.latest_checkpoint()
    if not path:
        return {"epoch": 0, "finished": False, "reason": StopReason.RUNNING.text, "best_epoch": -1}
    state = read_state(path)
    code = StopReason(state["finished"])
    return {"epoch": state["epoch"], "finished": code != StopReason.RUNNING, "reason": code.text,
            "best_epoch": state["best_epoch"]}


def is_done(run: RunDir) -> bool:
    """Finished (all epochs or stopped early) and its final files written."""
    return run_status(run)["finished"] and os.path.exists(run.metrics)


def config_digest(text: str) -> str:
    """What metrics.json records of the config.json its run wrote: a replaced config.json
    (another training into the same folder) no longer matches the model beside it."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class DataMatch:
    """How a prepared folder's split relates to what a run trained on.

    Attributes:
      own: the run's own data (its train/val manifests, or the very split file it had).
      images: rows in the split.
      seen: how many of them the run trained or validated on (None: its data is gone).
      note: one sentence for the user.
    """

    own: bool
    images: int
    seen: int | None
    note: str


def _paths(csv: str) -> set[str]:
    return set(pd.read_csv(csv, usecols=["path"], dtype={"path": str})["path"])


def match_data(run: RunDir, data_dir: str, split: str) -> DataMatch:
    """The one place that decides whether `data_dir`'s split is the run's own data.

    Own: the same train/val manifests as the run's (its data fingerprint), or a split file
    byte-equal to the one in the run's data folder (a cleaned copy keeps test.csv). Other:
    counts the split's images that the run trained or validated on, by their path.
    """
    config = run.read_config()
    split_csv = os.path.join(data_dir, f"{split}.csv")
    if not os.path.exists(split_csv):
        raise FileNotFoundError(f"{split_csv} not found: --data_dir must be an output folder "
                                "of age-tf-prepare")
    paths = _paths(split_csv)
    try:
        same = config.get("data_fingerprint") == prepared.PreparedDir(data_dir).fingerprint()
    except OSError:
        same = False
    own_dir = config.get("data_dir") or ""
    own_split = os.path.join(own_dir, f"{split}.csv")
    if not same and os.path.exists(own_split):
        with open(own_split, "rb") as a, open(split_csv, "rb") as b:
            same = a.read() == b.read()
    if same:
        return DataMatch(True, len(paths), 0 if split == "test" else None, "the run's own data")
    trained = [os.path.join(own_dir, f"{s}.csv") for s in ("train", "val")]
    if not all(os.path.exists(t) for t in trained):
        return DataMatch(False, len(paths), None,
                         f"not the run's own data, and its data folder {own_dir} is gone: "
                         "whether it trained on these images cannot be checked")
    seen = len(paths & (_paths(trained[0]) | _paths(trained[1])))
    return DataMatch(False, len(paths), seen,
                     f"not the run's own data ({own_dir}); {seen} of its {len(paths)} "
                     f"{split} images were this run's training or validation images")


# Settings that may differ when a run is resumed: they change how it runs, not what it
# computes (same order, same flips, same steps). Everything else must match.
# data_dir: the folder may move; what it holds is checked by the data fingerprint.
RESUME_FREE = {"model_dir", "data_dir", "flags_text", "log_every", "export", "strategy", "jit_compile",
               "feature_cache", "feature_store", "pipeline.cache", "num_cpu_devices",
               "interval_coverage", "interval_method"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = json.loads(json.dumps(v, default=str))
    return out


def check_resumable(run: RunDir, config: dict, fingerprint: str) -> None:
    """Refuses to resume a run under a configuration that would change what it computes.

    Args:
      config: the new run's config as a dict (dataclasses.asdict of its TrainConfig).

    Raises:
      ValueError: naming each changed flag with its old and new value.
    """
    if not (os.path.exists(run.config) and run.latest_checkpoint()):
        return  # nothing trained yet: the new configuration simply applies
    old = run.read_config()
    old_fp = old.pop("data_fingerprint", None)
    before, now = _flatten(old), _flatten(config)
    if before.get("init_from"):  # recorded as typed before runs kept absolute paths
        before["init_from"] = os.path.abspath(before["init_from"])
    changed = [f"--{k.rsplit('.', 1)[-1]}: {before.get(k)!r} -> {now[k]!r}"
               for k in sorted(now) if k not in RESUME_FREE and before.get(k) != now[k]]
    if old_fp is not None and old_fp != fingerprint:
        changed.append(f"--data_dir: the train/val manifests in {config.get('data_dir')} changed")
    if changed:
        raise ValueError(
            f"--model_dir={run.root} holds a run trained with other settings ({'; '.join(changed)}); "
            "resuming would silently change it. Use the same flags, or a new --model_dir")
