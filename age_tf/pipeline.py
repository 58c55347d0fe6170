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


class InputPipeline:
    """Builds the dataset of one split, per epoch and per input pipeline.

    Order: shuffle paths (train) -> read, decode, (crop) resize -> cache -> shuffle
    buffer (train, with cache) -> flip (train) -> batch -> prefetch.

    With a cache, the decoded images of each input pipeline are built once and reused by
    every epoch's dataset, so later epochs skip decoding.
    """

    def __init__(self, manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig,
                 training: bool, counter: DecodeCounter | None = None,
                 features: np.ndarray | None = None):
        """Args:
          manifest: rows with `path` (relative to images_dir) and `age`; with
            `crop_faces`, also face_x1..face_y2.
          images_dir: folder the paths are relative to.
          cfg: pipeline parameters.
          training: shuffle, flip and drop the last partial batch if True.
          counter: receives read / decoded counts (to report skipped files).
          features: instead of images, yield rows of this array (N, 2, D): a frozen
            backbone's features of each image as stored [:, 0] and mirrored [:, 1]. The
            order, batching and flip draws are exactly those of the image dataset, so a
            head trained on them sees what it would see behind the frozen backbone.
        """
        self.cfg, self.training, self.counter = cfg, training, counter
        self.features = None if features is None else tf.constant(features, tf.float32)
        self.paths = np.array([os.path.join(images_dir, p) for p in manifest["path"]])
        self.labels = labels.to_label(manifest["age"].to_numpy(dtype=np.float32))
        self.boxes = (manifest[["face_x1", "face_y1", "face_x2", "face_y2"]].to_numpy(np.float32)
                      if cfg.crop_faces else np.zeros((len(manifest), 4), np.float32))
        # Evaluation keeps manifest order so predictions line up with rows; training trades
        # order for throughput unless asked to be deterministic.
        self.ordered = cfg.deterministic or not training
        self._cached: dict[int, tf.data.Dataset] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _slices(self, input_context) -> tf.data.Dataset:
        # Feature mode orders row numbers exactly as image mode orders paths.
        keys = self.paths if self.features is None else np.arange(len(self), dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((keys, self.labels, self.boxes))
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds

    def _decoded(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        cfg, counter = self.cfg, self.counter
        if self.features is not None:
            features = self.features
            # The paths only served to order the elements; look up the row instead.
            return ds.map(lambda i, age, box: (tf.gather(features, i), age),
                          num_parallel_calls=AUTOTUNE, deterministic=self.ordered or None)

        def load(path, age, box):
            if counter is not None:
                counter.attempted.assign_add(1)
            image = decode(tf.io.read_file(path))
            image = resize(image, cfg.image_size, box if cfg.crop_faces else None, cfg.face_margin)
            return image, age

        def count_ok(image, age):
            counter.decoded.assign_add(1)
            return image, age

        # One fused map: fewer tf.data stages, less per-element overhead. read_file of a
        # missing file and decode of a broken one both raise; ignore_errors drops that
        # element only, and the counters say how many were dropped.
        ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=self.ordered or None)
        ds = ds.ignore_errors(log_warning=True)
        if counter is not None:
            ds = ds.map(count_ok)
        return ds

    def _cached_base(self, input_context) -> tf.data.Dataset:
        pid = input_context.input_pipeline_id if input_context is not None else 0
        if pid not in self._cached:
            ds = self._slices(input_context)
            if self.training:
                # The cached order is fixed by this one shuffle; epochs then mix it further
                # in the shuffle buffer. Without it, manifest order (grouped by person in
                # imdb.mat) would leak into the first epoch's batches.
                ds = ds.shuffle(max(len(self), 1), seed=self.cfg.seed, reshuffle_each_iteration=False)
            ds = self._decoded(ds)
            if self.cfg.cache == "memory":
                ds = ds.cache()
            else:
                os.makedirs(self.cfg.cache, exist_ok=True)
                kind = "train" if self.training else "eval"
                ds = ds.cache(os.path.join(self.cfg.cache, f"{kind}_{pid}"))
            self._cached[pid] = ds
        return self._cached[pid]

    def dataset(self, input_context: tf.distribute.InputContext | None = None,
                epoch: int | None = None) -> tf.data.Dataset:
        """The dataset of (images uint8 [B, S, S, 3], labels float32 [B] = age / AGE_SCALE).

        Args:
          input_context: from `strategy.distribute_datasets_from_function`; shards the files
            per input pipeline and uses the per-replica batch size.
          epoch: makes shuffling and flips a pure function of (cfg.seed, epoch), so that a
            resumed run sees the same data order as an uninterrupted one. None: fresh
            randomness at every iteration of the returned dataset.
        """
        cfg = self.cfg
        batch_size = cfg.batch_size
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(cfg.batch_size)
        reshuffle = epoch is None
        if cfg.cache:
            ds = self._cached_base(input_context)
            if self.training:
                seed = cfg.seed + 1 if epoch is None else _mix(cfg.seed, epoch, 1)
                ds = ds.shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=reshuffle)
        else:
            ds = self._slices(input_context)
            if self.training:
                seed = cfg.seed if epoch is None else _mix(cfg.seed, epoch, 0)
                ds = ds.shuffle(max(len(self), 1), seed=seed, reshuffle_each_iteration=reshuffle)
            ds = self._decoded(ds)
        if self.training:
            flip = random_flip if self.features is None else _pick_flipped
            ds = tf.data.Dataset.zip((ds, flip_seeds(cfg.seed, epoch))).map(
                lambda item, seed: (flip(item[0], seed), item[1]),
                num_parallel_calls=AUTOTUNE, deterministic=self.ordered or None)
        elif self.features is not None:
            ds = ds.map(lambda f, age: (f[0], age))  # evaluation never flips
        # Batches stay uint8: 4x less memory traffic and host-to-GPU copying than float32;
        # the model's input layer casts to float.
        ds = ds.batch(batch_size, drop_remainder=self.training, num_parallel_calls=AUTOTUNE,
                      deterministic=self.ordered or None)
        return apply_options(ds, self.ordered).prefetch(AUTOTUNE)


def map_images(fn, manifest: pd.DataFrame, images_dir: str, cfg: PipelineConfig) -> np.ndarray:
    """Applies fn (a float32 image batch -> array) to every manifest image, in row order.

    Raises:
      ValueError: an image failed to decode, so the results would not line up with rows.
    """
    ds = InputPipeline(manifest, images_dir, cfg, training=False).dataset()
    step = tf.function(lambda x: fn(tf.cast(x, tf.float32)))
    parts = [np.asarray(step(x)) for x, _ in ds]
    out = np.concatenate(parts) if parts else np.zeros((0,), np.float32)
    if len(out) != len(manifest):
        raise ValueError(f"{len(manifest) - len(out)} image(s) of the manifest failed to decode; "
                         "re-run age-tf-prepare on this data (it drops unreadable files)")
    return out


def make_dataset(
    manifest: pd.DataFrame,
    images_dir: str,
    cfg: PipelineConfig,
    training: bool,
    counter: DecodeCounter | None = None,
    input_context: tf.distribute.InputContext | None = None,
    epoch: int | None = None,
) -> tf.data.Dataset:
    """One-shot form of InputPipeline(...).dataset(...); see there."""
    return InputPipeline(manifest, images_dir, cfg, training, counter).dataset(input_context, epoch)


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


def write_input_figures(data_dir: str, out_dir: str, num: int, cfg: PipelineConfig,
                        seed: int = 0) -> list[str]:
    """Writes Figures 1 and 2 for the training split; returns their paths."""
    from age_tf import plots  # matplotlib only when figures are drawn

    manifest, images_dir = load_manifest(data_dir, "train")
    before, after, ages, flipped = sample_faces(manifest, images_dir, cfg, num, seed)
    os.makedirs(out_dir, exist_ok=True)
    fig1 = os.path.join(out_dir, "figure1_faces.png")
    fig2 = os.path.join(out_dir, "figure2_transformed.png")
    plots.plot_face_grid(before, [f"age {a}  {b.shape[1]}x{b.shape[0]}" for a, b in zip(ages, before)],
                         fig1, "Training faces as stored")
    plots.plot_face_grid(after, [f"age {a}{'  flipped' if f else ''}" for a, f in zip(ages, flipped)],
                         fig2, f"After the pipeline: resized to {cfg.image_size}x{cfg.image_size}, "
                               "random horizontal flip (p=0.5)")
    return [fig1, fig2]
