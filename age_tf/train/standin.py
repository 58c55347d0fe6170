"""Stand-in pretrained backbones: what `--weights=standin` loads when ImageNet cannot be had.

ImageNet weights cannot be downloaded offline, and a backbone trained from random weights
inside the demo's minutes learns nothing useful (measured: val PLCC ~0 after the old
in-demo pretraining). So `tools/pretrain_standin.py` pretrains each backbone once, for
hours, on a large synthetic corpus of people disjoint from every demo set, and the package
ships the result (float16) with a JSON card saying exactly how it was made.

This module is the one definition of that corpus, of the pretraining network (backbone +
a small age/attribute head) and of the shipped file format, so that the tool that writes
the files and the code and tests that read them cannot drift apart.

File format: `age_tf/standin/<backbone>.npz` with one array per weight, keyed
`backbone/<layer position>-<layer class>/<index>` and the same under `pretrain_head/`
(index = position in `layer.weights`), float16 where the value fits; `<backbone>.json` is the card.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import multiprocessing
import os

import keras
import numpy as np
import tensorflow as tf

from age_tf.synthetic import faces, synth

STANDIN_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "standin")
# Seeds of the corpus are drawn from SeedSequence([_CORPUS_TAG, seed]); the synthetic
# release (age-tf-synth) draws from default_rng(seed), another stream, so no person of the
# corpus is a person of any demo set (identity traits are continuous draws).
_CORPUS_TAG = 0x5A4D
# The fixed check set every card records figures on, re-measured by the tests.
CHECK_SEED = 7
CHECK_IMAGES = 96

# Identity traits the pretraining head predicts besides age (standardized in the loss).
ATTRIBUTES = ("gender", "beard", "long_hair", "recedes", "skin_r", "skin_g", "skin_b",
              "hair_r", "hair_g", "hair_b", "face_width", "jaw", "nose", "grey_onset")
AGE_SCALE = 100.0


def _attributes(ident: faces.Identity) -> list[float]:
    return [ident.gender, ident.beard, ident.long_hair, ident.recedes,
            *(c / 255 for c in ident.skin), *(c / 255 for c in ident.hair),
            ident.face_width, ident.jaw, ident.nose, ident.grey_onset / 100]


def _render_chunk(jobs: list[tuple]) -> list[bytes]:
    out = []
    for ident_seed, seed, age, size, quality, grey in jobs:
        ident = faces.random_identity(np.random.default_rng(ident_seed))
        img = faces.render_face(np.random.default_rng(seed), age, ident, size)
        buf = io.BytesIO()
        (img.convert("L") if grey else img).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def render_corpus(num: int, seed: int, image_size: int, images_per_identity: float = 4.0,
                  workers: int | None = None) -> dict:
    """Renders `num` faces of new people as the demo's pipeline would see them.

    Each face goes through what a release crop goes through: rendered at 96-192 px, JPEG
    at quality 60-95 (2% grayscale), decoded and resized by the input pipeline's own code.
    Ages: half IMDB-like (synth.sample_ages), half uniform over 0-100, so that every age is
    seen.

    Returns:
      {"images": uint8 [num, size, size, 3], "age": float32 [num], "identity": int64
       [num], "attributes": float32 [num, len(ATTRIBUTES)]}.
    """
    from age_tf.data import pipeline  # TF-heavy; workers only need the renderer.

    rng = np.random.default_rng(np.random.SeedSequence([_CORPUS_TAG, seed]))
    counts = []
    while sum(counts) < num:
        counts.append(int(rng.geometric(1.0 / images_per_identity)))
    counts[-1] -= sum(counts) - num
    identity = np.repeat(np.arange(len(counts)), counts)
    ident_seeds = rng.integers(0, 2**63 - 1, len(counts))
    ages = np.where(rng.random(num) < 0.5, synth.sample_ages(rng, num), rng.integers(0, 101, num))
    sizes = rng.integers(96, 193, num)
    quality = rng.integers(60, 96, num)
    grey = rng.random(num) < 0.02
    seeds = rng.integers(0, 2**63 - 1, num)
    jobs = [(int(ident_seeds[identity[i]]), int(seeds[i]), float(ages[i]), int(sizes[i]),
             int(quality[i]), bool(grey[i])) for i in range(num)]
    chunks = [jobs[i:i + 256] for i in range(0, num, 256)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(chunks) == 1:
        blobs = [b for c in chunks for b in _render_chunk(c)]
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            blobs = [b for res in pool.map(_render_chunk, chunks) for b in res]
    ds = tf.data.Dataset.from_tensor_slices(blobs).map(
        lambda b: pipeline.resize(pipeline.decode(b), image_size),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    images = np.concatenate(list(ds.batch(512).as_numpy_iterator()), 0)
    attrs = np.array([_attributes(faces.random_identity(np.random.default_rng(s)))
                      for s in ident_seeds], dtype=np.float32)[identity]
    return {"images": images, "age": ages.astype(np.float32), "identity": identity,
            "attributes": attrs}


def pretrain_model(backbone: str, image_size: int) -> keras.Model:
    """Pixels [0, 255] -> {"age": age / 100, "attributes": standardized traits}.

    The backbone is the registered one, built exactly as `--weights=none` builds it, so
    its weights load into the fine-tuning model by layer name.
    """
    from age_tf.train import models

    spec = models.BACKBONES[backbone]
    net = models.build_backbone(models.ModelConfig(backbone=backbone, image_size=image_size,
                                                   weights="none", tune="full"))
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = spec.normalization()(inputs) if spec.normalization else inputs
    x = net(x)
    x = keras.layers.Dense(256, activation="gelu", name="pretrain_dense")(x)
    return keras.Model(inputs, {
        "age": keras.layers.Dense(1, dtype="float32", name="pretrain_age")(x),
        "attributes": keras.layers.Dense(len(ATTRIBUTES), dtype="float32",
                                         name="pretrain_attributes")(x),
    }, name=f"{backbone}_standin")


def nested_backbone(model: keras.Model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _key(prefix: str, n: int, layer, i: int) -> str:
    # Position and class, not layer.name: Keras numbers unnamed layers per session
    # ("normalization_1"), so names differ between two builds of the same architecture.
    return f"{prefix}/{n:03d}-{type(layer).__name__}/{i}"


def _weight_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    backbone = nested_backbone(model)
    out = {}
    for prefix, layers in (("backbone", backbone.layers),
                           ("pretrain_head", [l for l in model.layers if l.name.startswith("pretrain_")])):
        for n, layer in enumerate(layers):
            for i, w in enumerate(layer.weights):
                out[_key(prefix, n, layer, i)] = keras.ops.convert_to_numpy(w)
    return out


def to_float16(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float16 where the value survives (|x| < 6e4); other arrays keep their dtype."""
    out = {}
    for k, v in arrays.items():
        fits = v.dtype == np.float32 and np.all(np.abs(v) < 6e4)
        out[k] = v.astype(np.float16) if fits else v
    return out


def save(model: keras.Model, path: str) -> None:
    """Writes the pretraining model's weights (float16 where they fit) to an .npz file."""
    from age_tf import fileio

    with fileio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **to_float16(_weight_arrays(model)))


def _assign(layers, arrays: dict, prefix: str, source: str) -> None:
    expected = {_key(prefix, n, l, i): w for n, l in enumerate(layers) for i, w in enumerate(l.weights)}
    stored = {k for k in arrays if k.startswith(prefix + "/")}
    missing, extra = sorted(set(expected) - stored), sorted(stored - set(expected))
    bad = [k for k in sorted(set(expected) & stored)
           if tuple(arrays[k].shape) != tuple(expected[k].shape)]
    if missing or extra or bad:
        raise ValueError(
            f"{source} does not fit today's architecture ({len(missing)} weights missing, e.g. "
            f"{missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]}; {len(bad)} of another "
            f"shape, e.g. {bad[:2]}). The model code changed since the file was written: "
            "rerun tools/pretrain_standin.py (see the card's command).")
    for k, w in expected.items():
        w.assign(arrays[k].astype(w.dtype))


def _shipped(backbone: str) -> str:
    path = os.path.join(STANDIN_DIR, f"{backbone}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no stand-in weights for {backbone} in {STANDIN_DIR} (shipped ones: "
            f"{sorted(f[:-4] for f in os.listdir(STANDIN_DIR) if f.endswith('.npz')) if os.path.isdir(STANDIN_DIR) else []}); "
            "write them with tools/pretrain_standin.py, or use --weights=none/imagenet/<file>")
    return path


def load_backbone(backbone_model: keras.Model, backbone: str, path: str | None = None) -> None:
    """Loads the shipped stand-in weights into a backbone built with weights=None."""
    path = path or _shipped(backbone)
    with np.load(path) as arrays:
        _assign(backbone_model.layers, dict(arrays), "backbone", path)


def load_pretrain_model(backbone: str, image_size: int, path: str | None = None) -> keras.Model:
    """The whole pretraining network (backbone + its age/attribute head) from a file."""
    path = path or _shipped(backbone)
    model = pretrain_model(backbone, image_size)
    with np.load(path) as arrays:
        arrays = dict(arrays)
        _assign(nested_backbone(model).layers, arrays, "backbone", path)
        _assign([l for l in model.layers if l.name.startswith("pretrain_")], arrays,
                "pretrain_head", path)
    return model


def card(backbone: str) -> dict:
    """The JSON card written beside the shipped weights."""
    path = _shipped(backbone)[:-4] + ".json"
    with open(path) as f:
        return json.load(f)


def _chain(card: dict) -> list[dict]:
    """A card and the cards it continued from (--init keeps them under "init"), oldest first."""
    cards = []
    while card:
        cards.insert(0, card)
        card = card.get("init")
    return cards


def training_steps(card: dict) -> list[dict]:
    """The pretraining steps behind a card, oldest first."""
    return [c["training"] for c in _chain(card)]


def training_corpora(card: dict) -> list[dict]:
    """The distinct corpora behind a card, oldest first (a continuation may switch to a fresh
    corpus, e.g. another seed, once the first one is being memorized)."""
    corpora = []
    for c in _chain(card):
        if c["corpus"] not in corpora:
            corpora.append(c["corpus"])
    return corpora


def age_figures(model: keras.Model, corpus: dict, batch_size: int = 128) -> dict:
    """MAE (years) and PLCC of the pretraining head's age on a rendered corpus."""
    pred = model.predict(corpus["images"].astype(np.float32), batch_size=batch_size,
                         verbose=0)["age"][:, 0] * AGE_SCALE
    age = corpus["age"]
    return {"mae_years": float(np.mean(np.abs(pred - age))),
            "plcc": float(np.corrcoef(pred, age)[0, 1]), "images": int(len(age))}


def feature_norms(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> dict:
    """Median, 99th percentile and maximum L2 norm of the backbone's pooled features.

    A healthy backbone keeps them within a small factor of each other; a few faces with
    norms ~100x the median (EfficientNet-B3 after batch-statistics training, in inference
    mode) make every head fitted on top extrapolate to absurd ages.
    """
    features = keras.Model(model.inputs, model.get_layer("pretrain_dense").input)
    norms = np.linalg.norm(features.predict(images.astype(np.float32), batch_size=batch_size,
                                            verbose=0), axis=1)
    median, p99, top = np.percentile(norms, [50, 99, 100])
    return {"median": float(median), "p99": float(p99), "max": float(top)}


def check_figures(backbone: str, image_size: int, path: str | None = None) -> dict:
    """The card's check: the stored network's age figures on the fixed check set."""
    corpus = render_corpus(CHECK_IMAGES, CHECK_SEED, image_size, workers=1)
    return age_figures(load_pretrain_model(backbone, image_size, path), corpus)
