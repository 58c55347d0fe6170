"""The age of every face in ordinary photos: detection (MTCNN), an IMDB-WIKI-style crop, age.

The models are trained on the release's face crops, so a photo's faces are found first
(MTCNN: a TensorFlow face detector whose weights ship inside its wheel, so it runs offline)
and each is cropped the way those crops were made: the detected box widened by a margin on
every side, then resized to the model's input. All faces of all photos then go through the
exported model in batches.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from age_tf import fileio
from age_tf.data import pipeline
from age_tf.serve.served_model import AgeModel


@dataclasses.dataclass
class Face:
    """One detected face and its predicted age.

    Attributes:
      file: the photo it was found in.
      index: its number in that photo (left to right).
      box: (x1, y1, x2, y2) in the photo's pixels, as detected (before the margin).
      confidence: the detector's confidence.
      landmarks: eyes, nose and mouth corners {name: (x, y)}.
      age: predicted age in years.
      age_low, age_high: its calibrated interval (None for a model without one).
    """

    file: str
    index: int
    box: tuple[float, float, float, float]
    confidence: float
    landmarks: dict[str, tuple[float, float]]
    age: float | None = None
    age_low: float | None = None
    age_high: float | None = None


def crop_face(image: np.ndarray, box, margin: float, size: int) -> np.ndarray:
    """The face as the models saw faces in training: box + margin on each side, resized.

    Parts of the widened box outside the photo are black. Same code path as the input
    pipeline's --crop_faces (pipeline.resize with a box), so training-style crops of
    full-size release images and crops of detected faces cannot diverge.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    # pipeline.face_box takes the release's 1-based MATLAB coordinates.
    release_box = tf.constant([x1 + 1, y1 + 1, x2 + 1, y2 + 1], tf.float32)
    return pipeline.resize(tf.constant(image), size, release_box, margin).numpy()


class FaceDetector:
    """MTCNN with the thresholds of this tool; built once, reused for every photo."""

    def __init__(self, min_face_size: int = 20, min_confidence: float = 0.9):
        from mtcnn import MTCNN  # heavy, and only detection needs it (not --faces=given)

        self.min_face_size, self.min_confidence = min_face_size, min_confidence
        self._mtcnn = MTCNN()

    def __call__(self, image: np.ndarray) -> list[tuple[tuple, float, dict]]:
        """(box x1,y1,x2,y2, confidence, landmarks) of each face, left to right."""
        found = self._mtcnn.detect_faces(image, box_format="xyxy", min_face_size=self.min_face_size)
        faces = []
        for f in found:
            if float(f["confidence"]) < self.min_confidence:
                continue
            box = tuple(float(v) for v in f["box"])
            marks = {k: (float(v[0]), float(v[1])) for k, v in f.get("keypoints", {}).items()}
            faces.append((box, float(f["confidence"]), marks))
        return sorted(faces, key=lambda f: f[0][0])


def estimate_many(photos: list[tuple[str, np.ndarray]], model: AgeModel, detector: FaceDetector,
                  margin: float | None = None, batch_size: int = 32) -> list[Face]:
    """Every face of every photo with its age; the crops go through the model in batches.

    Args:
      photos: (name, uint8 RGB image) pairs.
      margin: crop margin; default the one the model's card says it was trained on.
    """
    margin = model.crop_margin if margin is None else margin
    faces, crops = [], []
    for name, image in photos:
        for i, (box, conf, marks) in enumerate(detector(image)):
            faces.append(Face(name, i, box, conf, marks))
            crops.append(crop_face(image, box, margin, model.image_size))
    if crops:
        out = model(np.stack(crops), batch_size)
        for i, face in enumerate(faces):
            face.age = float(out["age"][i])
            if "age_low" in out:
                face.age_low, face.age_high = float(out["age_low"][i]), float(out["age_high"][i])
    return faces


def estimate(image: np.ndarray, model: AgeModel | str, detector: FaceDetector | None = None,
             margin: float | None = None) -> list[Face]:
    """The faces of one photo (uint8 RGB array) and their ages.

    Args:
      model: an AgeModel, or a path to an export/ folder (or a run holding one, or a
        .tflite file).
      detector: default MTCNN with this module's thresholds.
    """
    model = AgeModel(model) if isinstance(model, str) else model
    return estimate_many([("image", image)], model, detector or FaceDetector(), margin)


def read_photo(path: str) -> np.ndarray:
    """A JPEG/PNG file -> uint8 RGB array (grayscale/CMYK converted), as the pipeline decodes.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a JPEG or PNG image.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return pipeline.decode(tf.constant(data)).numpy()
    except tf.errors.InvalidArgumentError as e:
        raise ValueError("not a JPEG or PNG image") from e


def annotate(image: np.ndarray, faces: list[Face], path: str) -> None:
    """Writes the photo with each face's box and predicted age drawn on it."""
    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(image.shape[:2]) / 300))
    # Pillow's bundled font, scaled with the photo so the label stays readable.
    font = ImageFont.load_default(size=max(12, round(image.shape[0] / 25)))
    for f in faces:
        x1, y1, x2, y2 = f.box
        draw.rectangle([x1, y1, x2, y2], outline=(255, 220, 0), width=width)
        label = f"{f.age:.0f} y" if f.age is not None else "?"
        tw, th = draw.textbbox((0, 0), label, font=font)[2:]
        top = max(0, y1 - th - 2 * width)
        draw.rectangle([x1, top, x1 + tw + 2 * width, top + th + 2 * width], fill=(255, 220, 0))
        draw.text((x1 + width, top + width), label, fill=(0, 0, 0), font=font)
    with fileio.atomic_path(path) as tmp:
        img.save(tmp, quality=92) if path.lower().endswith((".jpg", ".jpeg")) else img.save(tmp)
