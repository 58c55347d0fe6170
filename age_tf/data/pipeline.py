"""tf.data input pipeline: manifest CSV -> decoded, resized, augmented image batches.

The pipeline yields uint8 RGB images (pixel values 0-255). Each backbone's own normalization is the
first layer of the model (see models.py), so a batch can never be normalized twice and the
exported model takes the same pixels as the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging

from age_tf import labels, progress
from age_tf.data import align
from age_tf.data.pipeline_config import AUGMENTATIONS, BOX_COLUMNS, PipelineConfig, image_size_field  # noqa: F401  (the pipeline's flags)

AUTOTUNE = tf.data.AUTOTUNE


CROP_SCALE = (0.8, 1.0)  # crop_flip's share of the area (albumentations' RandomResizedCrop)


def full_batches(images: int, batch_size: int) -> int:
    """Full batches in one pass over `images` (training drops the partial last one)."""
    return images // batch_size


JPEG_IDCT = "INTEGER_ACCURATE"


def decode(data: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes (whatever the file name says) -> uint8 RGB (grayscale/CMYK converted).

    JPEG, nearly every file, goes straight to decode_jpeg; decode_image's format dispatch
    measured ~15% slower per image. Its IDCT is libjpeg's accurate integer one, the one
    Pillow and most clients use: TensorFlow's default fast IDCT differs from Pillow by up to
    17 grey levels, so a client decoding with Pillow could not reproduce the served ages;
    the accurate one matches Pillow exactly at the same speed (tools/bench_decode.py).
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_IDCT),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def read_image(path: str) -> np.ndarray:
    """One image file -> uint8 RGB array, decoded as the pipeline decodes."""
    return decode(tf.io.read_file(path)).numpy()


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


def flip_seeds(seed: int, epoch: int | None) -> tf.data.Dataset:
    """A stream of stateless seeds, one per image, for the flips.

    With `epoch`, the stream is a pure function of (seed, epoch), so a resumed run (and the
    feature-cache trainer) draws exactly the flips an uninterrupted run draws. Without it,
    the stream changes at every iteration.
    """
    if epoch is None:
        return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.random(seed=_mix(seed, epoch, 2)).batch(2)


def flip_decision(seed: tf.Tensor) -> tf.Tensor:
    """True with p = 0.5, from a stateless seed of shape [2]."""
    return tf.random.stateless_uniform([], seed) < 0.5


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirrors one image left-right with p = 0.5, drawn from a stateless seed (shape [2]).

    tf.cond runs only the branch taken: a tf.where over both versions measured 7x slower.
    """
    return tf.cond(flip_decision(seed), lambda: tf.reverse(image, axis=[1]), lambda: image)


def crop_and_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The unified benchmark's training augmentation: a random square of CROP_SCALE of the
    image's area, resized back to its size, then random_flip; drawn from the image's seed."""
    size = tf.shape(image)[0]
    draws = tf.random.stateless_uniform([3], seed + 1)
    side = tf.sqrt(CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * draws[0])  # of 1
    y0, x0 = draws[1] * (1 - side), draws[2] * (1 - side)
    box = tf.stack([y0, x0, y0 + side, x0 + side])[None]
    crop = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], box, [0], [size, size])[0]
    return random_flip(tf.saturate_cast(crop + 0.5, tf.uint8), seed)


def _pick_flipped(features: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Feature-mode twin of random_flip: the same draw picks the mirrored image's features."""
    return tf.cond(flip_decision(seed), lambda: features[1], lambda: features[0])


def _mix(seed: int, epoch: int, stream: int) -> int:
    """Distinct, reproducible seeds per (seed, epoch, stream)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def apply_options(ds: tf.data.Dataset, ordered: bool) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = ordered
    # Elements come from one in-memory list of paths, not from files: shard by DATA.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


CACHE_FORMAT = 1  # bump when the cached bytes change meaning


def cache_key(manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig, image_size: int) -> str:
    """Names a decoded-image cache by everything its bytes depend on.

    The manifest's paths (and face boxes when cropping), each file's size and modification
    time (a cheap stand-in for its bytes), and the preprocessing (size, crop, margin): a
    changed file, manifest or setting gives another name, so a stale or foreign cache can
    never be read.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "idct": JPEG_IDCT, "size": image_size,
                         "crop": cfg.crop_faces, "align": cfg.align,
                         "margin": cfg.face_margin if cfg.crop_faces else None}).encode())
    for path in manifest["path"]:
        full = os.path.join(images_dir, path)
        try:
            st = os.stat(full)
            h.update(f"{full}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{full}\0missing\n".encode())
    if cfg.crop_faces:
        h.update(manifest[BOX_COLUMNS].to_numpy(np.float32).tobytes())
    if cfg.align:
        h.update("\n".join(manifest["aligned_bbox"].astype(str)).encode())
    return h.hexdigest()[:24]


def aligned_transforms(manifest: pd.DataFrame, image_size: int) -> np.ndarray:
    """Each row's alignment warp (align.transform, [N, 8]) from its aligned_bbox.

    Raises:
      ValueError: the manifest has no aligned squares, or some rows lack one (names how
        many, and what to do).
    """
    if "aligned_bbox" not in manifest:
        raise ValueError("--align: this prepared data has no aligned squares (no aligned_bbox "
                         "column); prepare with --format=facebase or --align, or train without "
                         "--align")
    text = manifest["aligned_bbox"].fillna("").astype(str)
    lacking = int((text.str.strip() == "").sum())
    if lacking:
        raise ValueError(f"--align: {lacking} of {len(manifest)} rows have no aligned square "
                         f"(e.g. {manifest['path'][text.str.strip() == ''].iloc[0]}); prepare "
                         "with --align (which rejects faces without landmarks), or train "
                         "without --align")
    return np.stack([align.transform(align.parse_corners_text(t), image_size) for t in text])


def _row_loader(paths: np.ndarray, boxes: np.ndarray, cfg: PipelineConfig, image_size: int):
    """Row number -> that row's file read, decoded, (cropped or aligned,) resized: a tf
    function. With cfg.align, `boxes` are the rows' alignment warps [N, 8]."""
    paths, boxes = tf.constant(paths), tf.constant(boxes)

    def load(i):
        image = decode(tf.io.read_file(tf.gather(paths, i)))
        if cfg.align:
            return align.warp(image, tf.gather(boxes, i), image_size)
        return resize(image, image_size, tf.gather(boxes, i) if cfg.crop_faces else None,
                      cfg.face_margin)

    return load


def _decode_all(paths: np.ndarray, boxes: np.ndarray, cfg: PipelineConfig, image_size: int):
    """Yields (row numbers, uint8 images) batches of every row that decodes, in row order."""
    load = _row_loader(paths, boxes, cfg, image_size)
    ds = tf.data.Dataset.range(len(paths)).map(lambda i: (i, load(i)),
                                                num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).batch(256).prefetch(2)
    for rows, images in ds:
        yield rows.numpy(), images.numpy()


def map_decodable(fn, manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig,
                  image_size: int, what: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """(row numbers, fn(float32 batch) rows) of the manifest's images that decode, in row
    order: map_images for a pass that may leave out an unreadable file (a calibration)."""
    source = ImageSource(manifest, images_dir, dataclasses.replace(cfg, cache=""), image_size)
    step = tf.function(_FloatImages(fn), input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)])
    rows, parts = [], []
    with progress.Bar(len(manifest), what) as bar:
        for r, batch in _decode_all(source.paths, source.boxes, cfg, image_size):
            for i in range(0, len(r), cfg.batch_size):
                parts.append(np.asarray(step(batch[i:i + cfg.batch_size])))
            rows.append(r)
            bar.update(len(r))
    if not rows:
        return np.zeros((0,), np.int64), np.zeros((0,), np.float32)
    return np.concatenate(rows), np.concatenate(parts)


def available_memory() -> int | None:
    """Bytes the system can still give without swapping (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# Share of the available memory a memory cache may take: the rest is for the model,
# TensorFlow's buffers, the other split's cache and the rest of the machine.
MEMORY_CACHE_SHARE = 0.7


def check_memory_cache_fits(num_images: int, image_size: int, available: int | None = None) -> int:
    """Bytes a memory cache of these images needs; raises if it would not fit.

    Raises:
      MemoryError: more than MEMORY_CACHE_SHARE of the available memory; the message names
        --cache and says what to use instead.
    """
    need = num_images * image_size * image_size * 3
    available = available_memory() if available is None else available
    if available is not None and need > MEMORY_CACHE_SHARE * available:
        raise MemoryError(
            f"--cache=memory: {num_images:,} images at {image_size}x{image_size} need "
            f"{need / 2**30:.1f} GiB, more than {MEMORY_CACHE_SHARE:.0%} of the "
            f"{available / 2**30:.1f} GiB of memory available. Use --cache=DIR (a folder on a "
            "local disk: one decode, then a file read per image), or a smaller --image_size.")
    return need


class ImageSource:
    """Where one split's uint8 images come from, by row number of the manifest.

    `rows` are the row numbers that can be served, `load(i)` is a tf function returning row
    i's image (uint8 [S, S, 3]). Four kinds:
      files: read, decode and resize every time (a file that fails to decode is dropped by
        the dataset and logged; `rows` holds the files that exist);
      memory: every image decoded once into one variable; `load` gathers a row;
      disk: every image decoded once into `<cache>/<key>/<row>.u8`; `load` reads one file;
      features: rows of a frozen backbone's features (N, 2, D), as stored and mirrored.
    Every kind serves rows by number, so order and flips are identical whatever the source,
    and each epoch can be a fresh permutation of the whole split even when cached.
    """

    def __init__(self, manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig,
                 image_size: int, features: np.ndarray | None = None):
        self.cfg, self.image_size = cfg, image_size
        self.paths = np.array([os.path.join(images_dir, p) for p in manifest["path"]])
        self.boxes = (manifest[BOX_COLUMNS].to_numpy(np.float32) if cfg.crop_faces
                      else aligned_transforms(manifest, image_size) if cfg.align
                      else np.zeros((len(manifest), 4), np.float32))
        if features is not None:
            self.kind = "features"
            # A variable, not a constant: a constant over ~2 GB cannot be put into the graph
            # of a dataset function; a variable is captured by handle.
            with tf.device("/cpu:0"):
                self._table = tf.Variable(np.asarray(features, np.float32), trainable=False)
            self.rows = np.arange(len(manifest), dtype=np.int64)
        elif not cfg.cache:
            self.kind = "files"
            self.rows = np.flatnonzero([os.path.exists(p) for p in self.paths]).astype(np.int64)
        elif cfg.cache == "memory":
            self.kind = "memory"
            self._build_memory()
        else:
            self.kind = "disk"
            self._build_disk(cache_key(manifest, images_dir, cfg, image_size))
        if len(self.rows) < len(manifest):
            logging.warning("%d of %d images cannot be read or decoded; they are left out",
                            len(manifest) - len(self.rows), len(manifest))

    def _build_memory(self) -> None:
        s = self.image_size
        check_memory_cache_fits(len(self.paths), s)
        ok = np.zeros(len(self.paths), bool)
        # Decoded batches go straight into the variable: one copy of the cache at any time
        # (a numpy array turned into a variable afterwards briefly took twice the memory).
        with tf.device("/cpu:0"):
            self._table = tf.Variable(tf.zeros((len(self.paths), s, s, 3), tf.uint8),
                                      trainable=False)
        for rows, batch in _decode_all(self.paths, self.boxes, self.cfg, s):
            self._table.scatter_update(tf.IndexedSlices(batch, rows))
            ok[rows] = True
        self.rows = np.flatnonzero(ok).astype(np.int64)

    def _build_disk(self, key: str) -> None:
        self.folder = os.path.join(self.cfg.cache, key)
        done = os.path.join(self.folder, "rows.npy")
        if not os.path.exists(done):
            os.makedirs(self.cfg.cache, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{key}-", dir=self.cfg.cache)
            try:
                ok = []
                for rows, batch in _decode_all(self.paths, self.boxes, self.cfg, self.image_size):
                    for r, image in zip(rows, batch):
                        image.tofile(os.path.join(tmp, f"{r:08d}.u8"))
                    ok.extend(rows.tolist())
                np.save(os.path.join(tmp, "rows.npy"), np.array(ok, np.int64))
                try:
                    os.rename(tmp, self.folder)  # complete entries only appear, atomically
                except OSError:
                    pass  # another process finished the same entry first: use it
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            logging.info("disk cache %s written", self.folder)
        else:
            logging.info("disk cache %s reused", self.folder)
        self.rows = np.load(done)

    def load_fn(self):
        """Row number -> element (uint8 image, or features for the 'features' kind)."""
        cfg, kind, size = self.cfg, self.kind, self.image_size
        if kind in ("features", "memory"):
            table = self._table
            return lambda i: table.sparse_read(i)
        if kind == "disk":
            prefix = self.folder + os.sep
            shape = [size, size, 3]
            return lambda i: tf.reshape(tf.io.decode_raw(tf.io.read_file(tf.strings.join(
                [prefix, tf.strings.as_string(i, width=8, fill="0"), ".u8"])), tf.uint8), shape)
        return _row_loader(self.paths, self.boxes, cfg, size)


class InputPipeline:
    """Builds the dataset of one split, per epoch and per input pipeline.

    Order: shuffle row numbers (train: a fresh permutation of the whole split each epoch)
    -> load (read, decode, crop, resize; or from the cache) -> flip (train) -> batch ->
    prefetch. Caches are built once, when the pipeline is made.
    """

    def __init__(self, manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig,
                 image_size: int, training: bool, seed: int = 0,
                 features: np.ndarray | None = None):
        """Args:
          manifest: rows with `path` (relative to images_dir) and `age`; with
            `crop_faces`, also face_x1..face_y2.
          images_dir: folder the paths are relative to.
          cfg: pipeline parameters.
          image_size: the side images are resized to (the model's input).
          training: shuffle, flip and drop the last partial batch if True.
          seed: with `epoch` in dataset(), makes order and flips reproducible.
          features: instead of images, yield rows of this array (N, 2, D): a frozen
            backbone's features of each image as stored [:, 0] and mirrored [:, 1]. The
            order, batching and flip draws are exactly those of the image dataset, so a
            head trained on them sees what it would see behind the frozen backbone.
        """
        self.cfg, self.training, self.seed = cfg, training, seed
        self.source = ImageSource(manifest, images_dir, cfg, image_size, features)
        self.labels = labels.to_label(manifest["age"].to_numpy(dtype=np.float32))
        # Evaluation keeps manifest order so predictions line up with rows; training trades
        # order for throughput unless asked to be deterministic.
        self.ordered = cfg.deterministic or not training

    def __len__(self) -> int:
        """Images that can be served (rows whose file exists or that are cached)."""
        return len(self.source.rows)

    def dataset(self, input_context: tf.distribute.InputContext | None = None,
                epoch: int | None = None, endless: bool = False) -> tf.data.Dataset:
        """The dataset of (images uint8 [B, S, S, 3], labels float32 [B] = age / AGE_SCALE).

        Args:
          input_context: from `strategy.distribute_datasets_from_function`; shards the rows
            per input pipeline and uses the per-replica batch size.
          epoch: makes shuffling and flips a pure function of (seed, epoch), so that a
            resumed run sees the same data order as an uninterrupted one. None: fresh
            randomness at every iteration of the returned dataset.
          endless: training only: repeat this epoch's order, so that a file that fails to
            decode mid-epoch shortens nothing (the trainer takes a fixed number of steps).
        """
        cfg, source = self.cfg, self.source
        batch_size = cfg.batch_size
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(cfg.batch_size)
        ds = tf.data.Dataset.from_tensor_slices(source.rows)
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if self.training:
            # Row numbers only: a full-size buffer is cheap and gives a uniform permutation.
            seed = self.seed if epoch is None else _mix(self.seed, epoch, 0)
            ds = ds.shuffle(max(len(self), 1), seed=seed, reshuffle_each_iteration=epoch is None)
            if endless:
                ds = ds.repeat()
        load, table = source.load_fn(), tf.constant(self.labels)
        det = self.ordered or None
        ds = ds.map(lambda i: (load(i), tf.gather(table, i)), num_parallel_calls=AUTOTUNE,
                    deterministic=det)
        if source.kind == "files":
            # read_file of a vanished file and decode of a broken one both raise;
            # ignore_errors drops that element only (and logs it).
            ds = ds.ignore_errors(log_warning=True)
        if self.training and cfg.augment != "none":
            flip = _pick_flipped if source.kind == "features" else random_flip
            if cfg.augment == "crop_flip":
                if source.kind == "features":
                    raise ValueError("--augment=crop_flip changes every image every epoch: "
                                     "cached features cannot follow; pass --nofeature_cache")
                flip = crop_and_flip
            ds = tf.data.Dataset.zip((ds, flip_seeds(self.seed, epoch))).map(
                lambda item, seed: (flip(item[0], seed), item[1]),
                num_parallel_calls=AUTOTUNE, deterministic=det)
        elif source.kind == "features":
            ds = ds.map(lambda f, age: (f[0], age))  # evaluation never flips
        # Batches stay uint8: 4x less memory traffic and host-to-GPU copying than float32;
        # the model's input layer casts to float.
        ds = ds.batch(batch_size, drop_remainder=self.training, num_parallel_calls=AUTOTUNE,
                      deterministic=det)
        return apply_options(ds, self.ordered).prefetch(AUTOTUNE)


class _FloatImages:
    """A uint8 batch -> fn(the batch as float32), or the float32 batch itself (fn None)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        x = tf.cast(x, tf.float32)
        return x if self.fn is None else self.fn(x)


def map_images(fn, manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig,
               image_size: int, what: str = "images") -> np.ndarray:
    """Applies fn (a float32 image batch -> array) to every manifest image, in row order;
    fn=None gives the float32 images themselves. Progress shows as `what`.

    Raises:
      ValueError: an image failed to decode, so the results would not line up with rows.
    """
    # One pass: a memory cache would only cost memory; a disk cache is worth filling.
    cfg = dataclasses.replace(cfg, cache="" if cfg.cache == "memory" else cfg.cache)
    ds = InputPipeline(manifest, images_dir, cfg, image_size, training=False).dataset()
    if fn is None:
        step = _FloatImages(None)  # eager: nothing to trace
    else:
        # Traced once per call: the batch dimension is left open, so the last, smaller batch
        # does not trace fn again. Each call traces a new function (fn differs); TensorFlow
        # counts traces per Python code object, so a lambda here would add every call's one
        # trace to the same count and warn of "retracing" that is not happening.
        step = tf.function(_FloatImages(fn), input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)])
    parts = []
    with progress.Bar(len(manifest), what) as bar:
        for x, _ in ds:
            parts.append(np.asarray(step(x)))
            bar.update(len(parts[-1]))
    out = np.concatenate(parts) if parts else np.zeros((0,), np.float32)
    if len(out) != len(manifest):
        raise ValueError(f"{len(manifest) - len(out)} image(s) of the manifest failed to decode; "
                         "re-run age-tf-prepare on this data (it drops unreadable files)")
    return out
