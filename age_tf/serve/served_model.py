"""A served age model, SavedModel or TFLite, with its card: float face crops -> age and interval.

Both kinds answer the same call, so photo and crop prediction have one code path; the card
(export/assets/model_card.json, or <file>.tflite.json) says what the model expects (image
size, crop margin) and what it is (synthetic training, interval coverage).
"""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import tensorflow as tf

from age_tf import decisions, export_format
from age_tf.data import sources
from age_tf.export_format import ALIGNED

MAX_TFLITE_BYTES = 2 << 30  # the flatbuffer format's own limit
TFLITE_IDENTIFIER = b"TFL3"  # bytes 4-8 of every TFLite flatbuffer

NO_CARD_NOTE = ("note: {path} has no model card (an export older than cards): assuming "
                "the release's crop margin {margin} and no intervals")


class AgeModel:
    """Face crops, float pixels [N, S, S, 3] in [0, 255] -> {"age", "age_low", "age_high"}
    in years (the interval only when the model was exported with one)."""

    def __init__(self, model_path: str):
        if model_path.endswith(".tflite"):
            self._load_tflite(model_path)
        else:
            self._load_saved_model(model_path)

    def _load_tflite(self, model_path: str) -> None:
        """The file is checked before the interpreter touches it: a damaged one crashed the
        process (a truncated file) or answered other ages (flipped weight bytes)."""
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"--model={model_path}: no such TFLite file")
        size = os.path.getsize(model_path)
        if size > MAX_TFLITE_BYTES:
            raise ValueError(f"--model={model_path}: {size / 2**30:.1f} GiB is not a TFLite file "
                             "age-tf-export wrote")
        with open(model_path, "rb") as f:
            content = f.read()
        if len(content) < 8 or content[4:8] != TFLITE_IDENTIFIER:
            raise ValueError(f"--model={model_path}: not a TFLite file (no {TFLITE_IDENTIFIER!r} "
                             "identifier); pass a .tflite file age-tf-export wrote")
        self.path = model_path
        self.card = export_format.read_card(export_format.card_path(model_path))
        export_format.check_digest(self.card, "file_sha256", hashlib.sha256(content).hexdigest(),
                                   model_path)
        with warnings.catch_warnings():
            # TF 2.21 points to ai_edge_litert; its own interpreter still runs the file.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            self._interpreter = tf.lite.Interpreter(model_content=content)
        self._runner = self._interpreter.get_signature_runner(export_format.IMAGES_SIGNATURE)
        detail = self._runner.get_input_details()["images"]
        self.image_size = int(detail["shape"][1])
        self._call = self._call_tflite

    def _load_saved_model(self, model_path: str) -> None:
        self.path = export_format.find_export(model_path)
        self.card = export_format.read_card(export_format.card_path(self.path))
        if self.card and self.card.get("model_sha256"):
            export_format.check_digest(self.card, "model_sha256",
                                       export_format.saved_model_sha256(self.path), self.path)
        serve = tf.saved_model.load(self.path).signatures[export_format.IMAGES_SIGNATURE]
        self._serve = serve
        self.image_size = int(serve.structured_input_signature[1]["images"].shape[1])
        self._call = self._call_saved_model

    @property
    def crop_margin(self) -> float:
        """The framing of the faces the model was trained on (the release's by default)."""
        margin = ((self.card or {}).get("preprocessing") or {}).get("crop_margin")
        return sources.RELEASE_MARGIN if margin is None else float(margin)

    @property
    def aligned(self) -> bool:
        """Trained on faces aligned from their eyes and mouth (the unified benchmark's
        square), not on boxes with a margin: the card's framing."""
        return ((self.card or {}).get("preprocessing") or {}).get("framing") == ALIGNED

    @property
    def age_range(self) -> list[float] | None:
        """The training ages, to which served ages and intervals are clipped (None: an
        export from before they were)."""
        return ((self.card or {}).get("intervals") or {}).get("age_range")

    @property
    def coverage(self) -> float | None:
        """What the served intervals guarantee: the calibrated coverage, or less where the
        validation split was too small to give it (the card's `guarantee`)."""
        calibration = (self.card or {}).get("intervals") or {}
        return calibration.get("guarantee", calibration.get("coverage"))

    def decision_cuts(self, thresholds, error: float = decisions.DEFAULT_ERROR,
                      band: float | None = None) -> list[decisions.Cut]:
        """The calibrated cuts of each threshold (years) at `error` (on the faces within
        `band` years of it only, if given), from the card's validation pairs.

        Raises:
          ValueError: the model's card has none (no card, or a run trained before
            decisions), or an error rate outside (0, 0.5).
        """
        sample = (self.card or {}).get("decisions")
        if not sample:
            raise ValueError(f"--thresholds: {self.path} has no decision calibration in its "
                             "card (a model trained before decisions, or without a card); "
                             "train it again with this version, or leave out --thresholds")
        return [decisions.calibrate(sample, t, error, band) for t in thresholds]

    def notes(self) -> list[str]:
        """What a user must be told once about this model (stderr lines)."""
        if self.card is None:
            return [NO_CARD_NOTE.format(path=self.path, margin=sources.RELEASE_MARGIN)]
        return [f"warning: {self.card['warning']}"] if self.card.get("warning") else []

    def _call_saved_model(self, batch: np.ndarray) -> dict:
        out = self._serve(images=tf.constant(batch, tf.float32))
        return {k: v.numpy() for k, v in out.items()}

    def _call_tflite(self, batch: np.ndarray) -> dict:
        # One face at a time: the converted graph has a fixed batch of one.
        parts = [self._runner(images=batch[i:i + 1].astype(np.float32)) for i in range(len(batch))]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def __call__(self, crops: np.ndarray, batch_size: int = 32) -> dict:
        outs = [self._call(np.asarray(crops[i:i + batch_size], np.float32))
                for i in range(0, len(crops), batch_size)]
        if not outs:
            return {"age": np.zeros((0,), np.float32)}
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def ages(self, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
        return self(crops, batch_size)["age"]

    # The Python API (notebooks, applications): the objects age-tf-predict and age-tf-serve use.
    @classmethod
    def load(cls, path: str) -> AgeModel:
        """An export/ folder, a run directory holding one, or a .tflite file."""
        return cls(path)

    def predict_faces(self, crops) -> dict:
        """Face crops, uint8 or float [N, S, S, 3] RGB at the model's size, framed as the
        card says -> {"age", "age_low", "age_high"} in years."""
        return self(np.asarray(crops, np.float32))
