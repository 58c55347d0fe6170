"""Maps a --strategy string to a tf.distribute strategy, and says who the chief is."""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

from age_tf.train.train_config import STRATEGIES


def split_cpu(num_devices: int) -> None:
    """Splits the CPU into `num_devices` logical devices (tests and CPU-only trials).

    Must run before TensorFlow initializes its devices (before any op or strategy).
    """
    if num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as e:
        raise RuntimeError(
            "--num_cpu_devices must be applied before TensorFlow starts; "
            f"it was already initialized ({e})") from e


def get_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the strategy; call it before building datasets or models.

    auto: MirroredStrategy over all GPUs if there is any, else one device (the CPU).
    one_device: the first GPU, or the CPU.
    mirrored: MirroredStrategy over all GPUs; without GPUs, over all logical CPU devices
      (see split_cpu), which is how it is tested on CPU machines.
    multi_worker: MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG.

    Raises:
      ValueError: unknown name, or multi_worker without a usable TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name!r}: choose one of {STRATEGIES}")
    raw = os.environ.get("TF_CONFIG")
    if raw is not None and name != "multi_worker":
        # TensorFlow parses TF_CONFIG for every strategy; a bad one fails deep inside it.
        try:
            json.loads(raw)
        except ValueError as e:
            raise ValueError(f"TF_CONFIG is set but is not JSON ({e}): {raw!r}; unset it "
                             "or fix it") from e
    if name == "multi_worker":
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if gpus else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) == 1:
        logging.warning("--strategy=mirrored with a single device (%s)", devices[0])
    return tf.distribute.MirroredStrategy(devices=devices)


def check_tf_config() -> dict:
    """Parses TF_CONFIG for multi_worker, with errors that say what is missing."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        _ = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not valid for multi_worker ({e}): {raw}") from e
    if not workers:
        raise ValueError(f"TF_CONFIG lists no workers: {raw}")
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The one process that writes checkpoints' final copies, logs and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_id(strategy: tf.distribute.Strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}{resolver.task_id}"


def _local_cpu_only(strategy: tf.distribute.Strategy) -> bool:
    """One replica, on this machine's CPU, no other worker."""
    return (strategy.num_replicas_in_sync == 1
            and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and not tf.config.list_logical_devices("GPU"))


def distribute_datasets(strategy: tf.distribute.Strategy, dataset_fn):
    """strategy.distribute_datasets_from_function(dataset_fn), except on one CPU replica:
    there the dataset is used as it is. TensorFlow's multi-device iterator would only copy
    each batch from the CPU to the same CPU, and print a notice ("Input of
    GeneratorDatasetOp::Dataset will not be optimized") at every epoch."""
    if _local_cpu_only(strategy):
        return dataset_fn(tf.distribute.InputContext())
    return strategy.distribute_datasets_from_function(dataset_fn)


def distribute_dataset(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """strategy.experimental_distribute_dataset(dataset) (global batches split across
    replicas), or the dataset itself on one CPU replica (see distribute_datasets)."""
    if _local_cpu_only(strategy):
        return dataset
    return strategy.experimental_distribute_dataset(dataset)
