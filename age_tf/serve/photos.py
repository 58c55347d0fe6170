"""The age of every face in ordinary photos: detection (MTCNN), an IMDB-WIKI-style crop, age.

The models are trained on the release's face crops, so a photo's faces are found first
(MTCNN: a TensorFlow face detector whose weights ship inside its wheel, so it runs offline)
and each is cropped the way those crops were made: the detected box widened by a margin on
every side, then resized to the model's input. All faces of all photos then go through the
exported model in batches.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from age_tf import fileio
from age_tf.data import align, images, pipeline

# The detector lives with the data (age-tf-prepare --align finds landmarks with it too);
# photos.FaceDetector stays the name the commands and the Python API use.
from age_tf.data.detect import FaceDetector
from age_tf.serve.serve_config import MAX_MEGAPIXELS
from age_tf.serve.served_model import AgeModel

# A photo file larger than this is refused before it is read (compressed, 180 MP is well
# under it; a sparse or endless file is not a photo).
MAX_PHOTO_FILE_BYTES = 1 << 30


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
    # Only the widened box (one pixel more for bilinear neighbours) goes to TensorFlow: the
    # same samples as from the whole photo, without a float copy of a large one.
    h, w = image.shape[:2]
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    top, left = max(0, math.floor(y1 - my) - 1), max(0, math.floor(x1 - mx) - 1)
    bottom, right = min(h, math.ceil(y2 + my) + 2), min(w, math.ceil(x2 + mx) + 2)
    if bottom - top < 2 or right - left < 2:  # a box off the photo: all black, as before
        top, left, bottom, right = 0, 0, h, w
    region = image[top:bottom, left:right]
    # pipeline.face_box takes the release's 1-based MATLAB coordinates.
    release_box = tf.constant([x1 - left + 1, y1 - top + 1, x2 - left + 1, y2 - top + 1],
                              tf.float32)
    return pipeline.resize(tf.constant(region), size, release_box, margin).numpy()


def find_faces(name: str, image: np.ndarray, detector: FaceDetector) -> list[Face]:
    """The faces of one photo, numbered left to right, without ages yet."""
    return [Face(name, i, box, conf, marks) for i, (box, conf, marks) in enumerate(detector(image))]


def face_crops(image: np.ndarray, faces: list[Face], model: AgeModel, margin: float) -> np.ndarray:
    """The model's input for these faces: float32 [N, S, S, 3], framed as in training: the
    aligned square of the face's landmarks for a model trained aligned (its card says so),
    else the detected box widened by `margin`."""
    if model.aligned:
        return np.stack([align.crop(image, align.square_from_landmarks(f.landmarks),
                                    model.image_size).numpy() for f in faces]).astype(np.float32)
    return np.stack([crop_face(image, f.box, margin, model.image_size)
                     for f in faces]).astype(np.float32)


def set_ages(faces: list[Face], out: dict) -> None:
    """Puts a model call's answers (rows in the faces' order) on the faces."""
    for i, face in enumerate(faces):
        face.age = float(out["age"][i])
        if "age_low" in out:
            face.age_low, face.age_high = float(out["age_low"][i]), float(out["age_high"][i])


def estimate_photo(name: str, image: np.ndarray, model: AgeModel, detector: FaceDetector,
                   margin: float | None = None, batch_size: int = 32) -> list[Face]:
    """Every face of one photo with its age. The crops go through the model batch_size at a
    time, so memory holds one batch of crops whatever the number of faces (a class photo).

    Args:
      margin: crop margin; default the one the model's card says it was trained on.
    """
    margin = model.crop_margin if margin is None else margin
    faces = find_faces(name, image, detector)
    for start in range(0, len(faces), batch_size):
        part = faces[start:start + batch_size]
        set_ages(part, model(face_crops(image, part, model, margin), batch_size))
    return faces


def estimate_many(photos, model: AgeModel, detector: FaceDetector,
                  margin: float | None = None, batch_size: int = 32) -> list[Face]:
    """Every face of every (name, uint8 RGB image) pair, photo by photo (estimate_photo);
    `photos` may be a generator, so that only one photo is in memory at a time."""
    faces = []
    for name, image in photos:
        faces += estimate_photo(name, image, model, detector, margin, batch_size)
    return faces


def estimate(image: np.ndarray | str, model: AgeModel | str,
             detector: FaceDetector | None = None, margin: float | None = None) -> list[Face]:
    """The faces of one photo and their ages: the one door to photo ages from Python (what
    age-tf-predict and age-tf-serve do per photo).

    Args:
      image: a uint8 RGB array, or a photo's path (read as age-tf-predict reads it; its
        faces are named by it).
      model: an AgeModel, or a path to an export/ folder (or a run holding one, or a
        .tflite file).
      detector: default MTCNN with this module's thresholds.
    """
    model = AgeModel(model) if isinstance(model, str) else model
    name = image if isinstance(image, str) else "image"
    if isinstance(image, str):
        image = read_photo(image)
    return estimate_many([(name, np.asarray(image))], model, detector or FaceDetector(), margin)


def photo_size(path: str, max_megapixels: float = MAX_MEGAPIXELS) -> tuple[int, int, str]:
    """(width, height, format) from the file's header, checked against the pixel budget
    before anything is decoded.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an image, or over the budget (naming --max_megapixels).
    """
    # A FIFO among the photos would block the reader forever, a link to /dev/zero never ends.
    problem = images.file_problem(path, max_bytes=MAX_PHOTO_FILE_BYTES)
    if problem == "missing file":
        raise FileNotFoundError(path)
    if problem:
        raise ValueError(problem)
    return _checked_size(path, os.path.getsize(path), max_megapixels)


def _checked_size(source, size: int, max_megapixels: float) -> tuple[int, int, str]:
    """(width, height, format) of an image file or file object from its header alone."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # this function's budget applies, not Pillow's global one
    try:
        with Image.open(source) as im:
            (width, height), fmt = im.size, im.format or "unknown"
    except (Image.UnidentifiedImageError, SyntaxError) as e:
        raise ValueError("not a JPEG or PNG image (no image format recognized)") from e
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ValueError(f"{width}x{height} is {megapixels:,.0f} megapixels, over "
                         f"--max_megapixels={max_megapixels:g} (decoding needs "
                         f"~{3 * megapixels / 1000:.1f} GB); raise it to read this photo")
    if size > 4 * width * height + (1 << 20):
        raise ValueError(f"{size:,} bytes is more than a {width}x{height} image can hold; "
                         "not an image file")
    return width, height, fmt


def read_photo(path: str, max_megapixels: float = MAX_MEGAPIXELS) -> np.ndarray:
    """A JPEG/PNG file -> uint8 RGB array (grayscale/CMYK converted), as the pipeline decodes,
    within the pixel budget.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an image, a damaged one (truncated, corrupt), or over the budget.
    """
    _, _, fmt = photo_size(path, max_megapixels)
    with open(path, "rb") as f:
        return _decoded(f.read(), fmt)


def decode_photo(data: bytes, max_megapixels: float = MAX_MEGAPIXELS) -> np.ndarray:
    """The bytes of a JPEG/PNG (an upload) -> uint8 RGB array, as read_photo reads a file:
    the header is checked against the pixel budget before anything is decoded.

    Raises:
      ValueError: empty, not an image, damaged, or over the budget.
    """
    if not data:
        raise ValueError("empty: no image bytes")
    _, _, fmt = _checked_size(io.BytesIO(data), len(data), max_megapixels)
    return _decoded(data, fmt)


def _decoded(data: bytes, fmt: str) -> np.ndarray:
    try:
        return pipeline.decode(tf.constant(data)).numpy()
    except tf.errors.InvalidArgumentError as e:
        if fmt in ("JPEG", "PNG", "GIF", "BMP"):
            raise ValueError(f"a damaged {fmt} file (truncated or corrupt: it does not "
                             "decode)") from e
        raise ValueError(f"not a JPEG or PNG image ({fmt})") from e


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
