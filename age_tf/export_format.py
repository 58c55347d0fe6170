"""What an export is, for the code that writes it (train/) and the code that serves it
(serve/): the signature names, where the model card lives, and how a card is read.

Below both, so that serving never imports training code.
"""

from __future__ import annotations

import json
import os

IMAGES_SIGNATURE = "serving_default"  # float images [N, S, S, 3] in [0, 255]
BYTES_SIGNATURE = "serve_bytes"  # encoded JPEG/PNG bytes [N]
EXPORT_FOLDER = "export"  # a run's SavedModel, inside the run folder

CARD_FORMAT = 1
CARD_ASSET = "model_card.json"  # in <export>/assets/
TFLITE_CARD_SUFFIX = ".json"  # <file>.tflite.json beside a TFLite file
MAX_CARD_BYTES = 1 << 20  # a card is a few KB; anything larger is not one
SYNTHETIC_WARNING = "trained on synthetic faces: ages of real photos are not meaningful"


def card_path(model_path: str) -> str:
    """Where the card of a SavedModel folder or a .tflite file is."""
    if model_path.endswith(".tflite"):
        return model_path + TFLITE_CARD_SUFFIX
    return os.path.join(model_path, "assets", CARD_ASSET)


def find_export(path: str) -> str:
    """The SavedModel folder of `path`: an export folder, or a run folder holding one.

    Raises:
      FileNotFoundError: no SavedModel there (says what to pass instead).
    """
    run_export = os.path.join(path, EXPORT_FOLDER)
    if os.path.isdir(run_export):
        path = run_export
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{path}: no SavedModel here; pass --model=<run>/export "
                                "(a finished age-tf-train run's export folder) or the run folder")
    return path


def read_card(path: str) -> dict | None:
    """A card file, or None when there is none (an export older than cards).

    Raises:
      ValueError: the file is not a card (names it and the fix).
    """
    if not os.path.exists(path):
        return None
    fix = "re-export the run (age-tf-export --model_dir=RUN) or remove the file"
    if os.path.getsize(path) > MAX_CARD_BYTES:
        raise ValueError(f"{path}: {os.path.getsize(path):,} bytes is not a model card; {fix}")
    try:
        with open(path) as f:
            card = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable model card ({e}); {fix}") from e
    if not isinstance(card, dict) or not isinstance(card.get("preprocessing"), dict):
        raise ValueError(f"{path}: not a model card (no preprocessing section); {fix}")
    return card


def card_summary(card: dict) -> dict:
    """What a prediction's JSON output carries of the card."""
    test = card.get("test") or {}
    return {"backbone": card["model"]["backbone"], "tune": card["model"]["tune"],
            "weights": card["weights"]["source"], "synthetic": card["synthetic"],
            "labels": card["data"].get("labels"), "image_size": card["preprocessing"]["image_size"],
            "crop_margin": card["preprocessing"]["crop_margin"],
            "interval_coverage": (card.get("intervals") or {}).get("coverage"),
            "test_mae_years": test.get("mae_years"), "test_plcc": test.get("plcc"),
            **({"warning": card["warning"]} if "warning" in card else {})}
