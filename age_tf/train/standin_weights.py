"""The shipped stand-in file format: weights by layer position, and the card beside them.

`<backbone>.npz` holds one array per weight, keyed `backbone/<layer position>-<layer
class>/<index>` and the same under `pretrain_head/` (index = position in `layer.weights`),
float16 where the value fits; `<backbone>.json` is the card.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from age_tf import fileio

# The files ship as package data in age_tf/standin/, beside the code that made them.
STANDIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "standin")
PRETRAIN_PREFIX = "pretrain_"  # layer names of the pretraining head


def nested_backbone(model: keras.Model) -> keras.Model:
    """The backbone inside a pretraining model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def pretrain_head_layers(model: keras.Model) -> list:
    return [l for l in model.layers if l.name.startswith(PRETRAIN_PREFIX)]


def _key(prefix: str, n: int, layer, i: int) -> str:
    # Position and class, not layer.name: Keras numbers unnamed layers per session
    # ("normalization_1"), so names differ between two builds of the same architecture.
    return f"{prefix}/{n:03d}-{type(layer).__name__}/{i}"


def _weight_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    out = {}
    for prefix, layers in (("backbone", nested_backbone(model).layers),
                           ("pretrain_head", pretrain_head_layers(model))):
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
    """Writes a pretraining model's weights (float16 where they fit) to an .npz file."""
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **to_float16(_weight_arrays(model)))


def assign(layers, arrays: dict, prefix: str, source: str) -> None:
    """Loads the arrays stored under `prefix` into `layers`, checking every key and shape.

    Raises:
      ValueError: the file does not fit the architecture (names the file and the fix).
    """
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


def shipped(backbone: str) -> str:
    """The path of the shipped weights of a backbone.

    Raises:
      FileNotFoundError: none shipped (lists those that are, and the alternatives).
    """
    path = os.path.join(STANDIN_DIR, f"{backbone}.npz")
    if not os.path.exists(path):
        have = sorted(f[:-4] for f in os.listdir(STANDIN_DIR) if f.endswith(".npz"))
        raise FileNotFoundError(
            f"no stand-in weights for {backbone} in {STANDIN_DIR} (shipped ones: {have}); "
            "write them with tools/pretrain_standin.py, or use --weights=none/imagenet/<file>")
    return path


def load_backbone(backbone_model: keras.Model, backbone: str, path: str | None = None) -> None:
    """Loads the stand-in weights (default: the shipped ones) into a backbone built with
    weights=None."""
    path = path or shipped(backbone)
    with np.load(path) as arrays:
        assign(backbone_model.layers, dict(arrays), "backbone", path)


def card(backbone: str) -> dict:
    """The JSON card written beside the shipped weights."""
    with open(shipped(backbone)[:-4] + ".json") as f:
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
