"""tf.data input pipeline: manifest CSV -> decoded, resized, augmented image batches.

The pipeline yields uint8 RGB images (pixel values 0-255). Each backbone's own normalization is the
first layer of the model (see models.py), so a batch can never be normalized twice and the
exported model takes the same pixels as the pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import tensorflow as tf

from age_tf import labels

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class PipelineConfig:
    """How images are read and fed.

    Attributes:
      image_size: side of the square network input (the study used 256).
      batch_size: global batch size.
      crop_faces: crop the manifest's face box (plus `face_margin`) before resizing. Off by
        default: the release's `*_crop` images already carry a 40% margin around the face.
      face_margin: extra border around the face box, as a share of the box size per side.
      cache: '' (no cache), 'memory', or a directory for an on-disk cache of the decoded,
        resized uint8 images (later epochs skip JPEG decoding).
      shuffle_buffer: training shuffles the whole file list every epoch (cheap: paths only);
        with a cache, whose order is fixed by the first epoch, decoded images are mixed
        again in a buffer of this many images.
      deterministic: reproducible element order and augmentation (slower: no reordering
        of parallel work).
      seed: seeds shuffling and flips.
    """

    image_size: int = 256
    batch_size: int = 32
    crop_faces: bool = False
    face_margin: float = 0.4
    cache: str = ""
    shuffle_buffer: int = 1024
    deterministic: bool = False
    seed: int = 0


class DecodeCounter:
    """Counts images read and images that decoded, across the dataset's life.

    A file that fails to decode is dropped (never ends an epoch) and shows up here as
    `attempted - decoded`. With a cache, files are read in the first epoch only.
    """

    def __init__(self):
        self.attempted = tf.Variable(0, dtype=tf.int64, trainable=False, name="attempted")
        self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False, name="decoded")

    @property
    def skipped(self) -> int:
        return int(self.attempted.numpy() - self.decoded.numpy())


def load_manifest(data_dir: str, split: str) -> tuple[pd.DataFrame, str]:
    """Reads `<data_dir>/<split>.csv` and the images folder recorded by age-tf-prepare.

    Returns:
      (manifest, images_dir).

    Raises:
      FileNotFoundError: the manifest or report is missing (names the file and the fix).
    """
    path = os.path.join(data_dir, f"{split}.csv")
    report = os.path.join(data_dir, "report.json")
    for p in (path, report):
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"{p} not found: --data_dir must be an output folder of age-tf-prepare")
    with open(report) as f:
        images_dir = json.load(f)["inputs"]["images_dir"]
    return pd.read_csv(path), images_dir


def decode(data: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes (whatever the file name says) -> uint8 RGB (grayscale/CMYK converted).

    JPEG, nearly every file, goes straight to decode_jpeg; decode_image's format dispatch
    measured ~15% slower per image.
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def face_box(box: tf.Tensor, height: tf.Tensor, width: tf.Tensor, margin: float) -> tf.Tensor:
    """Release face box [x1, y1, x2, y2] -> crop_and_resize box [y1, x1, y2, x2] with margin.

    The release gives MATLAB pixel coordinates (1-based, pixel centres); crop_and_resize
    maps normalized v to pixel centre v * (size - 1), 0-based. The box may extend past the
    image; crop_and_resize fills outside with zeros.
    """
    x1, y1, x2, y2 = box[0] - 1.0, box[1] - 1.0, box[2] - 1.0, box[3] - 1.0
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    h = tf.maximum(tf.cast(height, tf.float32) - 1.0, 1.0)
    w = tf.maximum(tf.cast(width, tf.float32) - 1.0, 1.0)
    return tf.stack([(y1 - my) / h, (x1 - mx) / w, (y2 + my) / h, (x2 + mx) / w])


def resize(image: tf.Tensor, size: int, box: tf.Tensor | None = None, margin: float = 0.0) -> tf.Tensor:
    """uint8 image -> uint8 size x size, bilinear.

    No antialiasing: it costs 3x the time of the whole decode + resize (measured: 780 vs
    2,500 images/s on 200-400 px crops), and release crops are within about 2x of 256 px,
    where bilinear aliasing is slight.

    With `box`, crops the face (plus margin) and resizes in one step.
    """
    if box is None:
        out = tf.image.resize(image, [size, size], method="bilinear")
    else:
        shape = tf.shape(image)
        nbox = face_box(box, shape[0], shape[1], margin)
        out = tf.image.crop_and_resize(
            tf.cast(image, tf.float32)[None], nbox[None], [0], [size, size])[0]
    # uint8 keeps the cache 4x smaller than float32 (21k images at 256: 4 GB, not 16).
    return tf.saturate_cast(out + 0.5, tf.uint8)  # round half up, clip to [0, 255]


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirrors one image left-right with p = 0.5, drawn from a stateless seed (shape [2]).

    tf.image's op flips in place of a select: a tf.where over both versions measured 8x
    slower.
    """
    return tf.image.stateless_random_flip_left_right(image, seed)


def make_dataset(
    manifest: pd.DataFrame,
    images_dir: str,
    cfg: PipelineConfig,
    training: bool,
    counter: DecodeCounter | None = None,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds the dataset for one split.

    Order: shuffle paths (train) -> read, decode, (crop) resize -> cache -> shuffle
    buffer (train, with cache) -> flip (train) -> batch -> prefetch.

    Args:
      manifest: rows with `path` (relative to images_dir) and `age`; with `crop_faces`,
        also face_x1..face_y2.
      images_dir: folder the paths are relative to.
      cfg: pipeline parameters.
      training: shuffle, flip and repeat-friendly batching (drop_remainder) if True.
      counter: receives read / decoded counts (to report skipped files).
      input_context: from `strategy.distribute_datasets_from_function`; shards the files
        per input pipeline and uses the per-replica batch size.

    Returns:
      A dataset of (images uint8 [B, S, S, 3], labels float32 [B] = age / AGE_SCALE).
    """
    paths = np.array([os.path.join(images_dir, p) for p in manifest["path"]])
    ages = labels.to_label(manifest["age"].to_numpy(dtype=np.float32))
    boxes = (manifest[["face_x1", "face_y1", "face_x2", "face_y2"]].to_numpy(np.float32)
             if cfg.crop_faces else np.zeros((len(manifest), 4), np.float32))
    ds = tf.data.Dataset.from_tensor_slices((paths, ages, boxes))
    if training:
        ds = ds.shuffle(max(len(manifest), 1), seed=cfg.seed, reshuffle_each_iteration=True)
    # Evaluation keeps manifest order so predictions line up with rows; training trades
    # order for throughput unless asked to be deterministic.
    ordered = cfg.deterministic or not training
    batch_size = cfg.batch_size
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(cfg.batch_size)

    def load(path, age, box):
        if counter is not None:
            counter.attempted.assign_add(1)
        image = decode(tf.io.read_file(path))
        image = resize(image, cfg.image_size, box if cfg.crop_faces else None, cfg.face_margin)
        return image, age

    def count_ok(image, age):
        counter.decoded.assign_add(1)
        return image, age

    # One fused map: fewer tf.data stages, less per-element overhead. read_file of a missing
    # file and decode of a broken one both raise; ignore_errors drops that element only,
    # and the counters say how many were dropped.
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=ordered or None)
    ds = ds.ignore_errors(log_warning=True)
    if counter is not None:
        ds = ds.map(count_ok)
    if cfg.cache == "memory":
        ds = ds.cache()
    elif cfg.cache:
        os.makedirs(cfg.cache, exist_ok=True)
        ds = ds.cache(os.path.join(cfg.cache, "train" if training else "eval"))
    if training and cfg.cache:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed + 1, reshuffle_each_iteration=True)
    if training:
        # A random stream that changes every epoch gives each image a stateless flip seed:
        # reproducible given cfg.seed.
        rand = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, rand)).map(
            lambda item, seed: (random_flip(item[0], seed), item[1]),
            num_parallel_calls=AUTOTUNE, deterministic=ordered or None)
    # Batches stay uint8: 4x less memory traffic and host-to-GPU copying than float32; the
    # model's input layer casts to float.
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE,
                  deterministic=ordered or None)
    options = tf.data.Options()
    options.deterministic = ordered
    # Elements come from one in-memory list of paths, not from files: shard by DATA.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def sample_faces(manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig, num: int,
                 seed: int = 0):
    """The study's Figures 1 and 2: training faces before and after the transformations.

    Returns:
      (originals as decoded, transformed as the network sees them, ages, flipped flags).
    """
    rows = manifest.sample(n=min(num, len(manifest)), random_state=seed)
    before, after, flipped = [], [], []
    for i, row in enumerate(rows.itertuples()):
        image = decode(tf.io.read_file(os.path.join(images_dir, row.path)))
        box = tf.constant([row.face_x1, row.face_y1, row.face_x2, row.face_y2], tf.float32)
        small = resize(image, cfg.image_size, box if cfg.crop_faces else None, cfg.face_margin)
        out = random_flip(small, tf.constant([seed, i], tf.int64))
        before.append(image.numpy())
        after.append(out.numpy())
        flipped.append(bool(tf.reduce_any(out != small)))
    return before, after, rows["age"].tolist(), flipped
