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
from age_tf.serve.served_model import AgeModel

# Twice Pillow's decompression-bomb limit (89.5 MP), where Pillow itself refuses: 180 MP
# decode to ~0.5 GB of RGB, and a 144 MP (12,000 px) camera panorama still reads.
MAX_MEGAPIXELS = 180.0
# A photo file larger than this is refused before it is read (compressed, 180 MP is well
# under it; a sparse or endless file is not a photo).
MAX_PHOTO_FILE_BYTES = 1 << 30

# Faces are found on a copy whose longer side is at most this (MTCNN's time and memory grow
# with the pixels: a 144 MP photo took 523 s and 13.9 GB at full size); crops are cut from
# the full-resolution photo.
DETECT_SIDE = 1600
# Above twice this side the copy is searched in overlapping tiles: MTCNN's non-maximum suppression
# compares every proposal with every other (memory quadratic in the proposals), so a crowd
# of 480 faces in one call took 9.7-10.1 GB. A tile holds a bounded share of the faces;
# tiles overlap by a quarter, so a face up to that size lies whole in one of them, and larger
# faces are found by one pass over a smaller copy.
DETECT_TILE = 512
OVERLAP_SHARE = 4  # tiles overlap by a quarter: ~1.6x the copy's area searched, not 4x


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


class FaceDetector:
    """MTCNN with the thresholds of this tool; built once, reused for every photo."""

    def __init__(self, min_face_size: int = 20, min_confidence: float = 0.9,
                 detect_side: int = DETECT_SIDE, tile: int = DETECT_TILE):
        from mtcnn import MTCNN  # heavy, and only detection needs it (not --faces=given)

        self.min_face_size, self.min_confidence = min_face_size, min_confidence
        self.detect_side, self.tile = detect_side, tile
        self._mtcnn = MTCNN()

    def __call__(self, image: np.ndarray) -> list[tuple[tuple, float, dict]]:
        """(box x1,y1,x2,y2, confidence, landmarks) of each face, left to right, in the
        photo's own pixels (found on a copy of at most detect_side pixels a side)."""
        small, scale = downscaled(image, self.detect_side)
        # MTCNN's window is 12 px: a smaller minimum would upsample the photo.
        min_size = max(12, round(self.min_face_size * scale))
        h, w = small.shape[:2]
        if max(h, w) <= 2 * self.tile:  # an ordinary photo: one pass, as MTCNN is used
            found = self._search(small, min_size, 0, 0)
        else:
            overlap = self.tile // OVERLAP_SHARE
            # Faces over the overlap: on a copy where they are 40+ px, with MTCNN's default
            # minimum (a large min_face_size makes its pyramid end below its 12 px window).
            smaller, k = downscaled(small, math.ceil(max(h, w) * 40 / overlap))
            found = [(tuple(v / k for v in box), conf,
                      {n: (p[0] / k, p[1] / k) for n, p in marks.items()})
                     for box, conf, marks in self._search(smaller, 20, 0, 0)]
            if min_size < overlap:
                for y in _tile_starts(h, self.tile, overlap):
                    for x in _tile_starts(w, self.tile, overlap):
                        found += self._search(small[y:y + self.tile, x:x + self.tile],
                                              min_size, x, y)
                found = _one_box_per_face(found)
        faces = [(tuple(v / scale for v in box), conf,
                  {k: (v[0] / scale, v[1] / scale) for k, v in marks.items()})
                 for box, conf, marks in found]
        return sorted(faces, key=lambda f: f[0][0])

    def _search(self, image: np.ndarray, min_size: int, x0: int, y0: int) -> list:
        """MTCNN on one image (or tile at x0, y0): the confident faces, in the copy's pixels."""
        out = []
        for f in self._mtcnn.detect_faces(np.ascontiguousarray(image), box_format="xyxy",
                                          min_face_size=min_size):
            if float(f["confidence"]) < self.min_confidence:
                continue
            x1, y1, x2, y2 = (float(v) for v in f["box"])
            marks = {k: (float(v[0]) + x0, float(v[1]) + y0)
                     for k, v in f.get("keypoints", {}).items()}
            out.append(((x1 + x0, y1 + y0, x2 + x0, y2 + y0), float(f["confidence"]), marks))
        return out


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one side, neighbours overlapping by `overlap`, the last flush with
    the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _one_box_per_face(found: list) -> list:
    """Overlapping tiles (and the whole-copy pass) find a face more than once, or a part of
    it at a tile's edge: of boxes that lie mostly (over half the smaller) inside one
    another, the largest is kept."""
    kept = []
    for face in sorted(found, key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1])):
        x1, y1, x2, y2 = face[0]
        area = (x2 - x1) * (y2 - y1)
        inside = False
        for other in kept:
            a1, b1, a2, b2 = other[0]
            overlap = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            if overlap > 0.5 * min(area, (a2 - a1) * (b2 - b1)):
                inside = True
                break
        if not inside:
            kept.append(face)
    return kept


def downscaled(image: np.ndarray, side: int, strip_rows: int = 64) -> tuple[np.ndarray, float]:
    """(copy with its longer side at most `side`, its scale); the photo itself if small.

    Shrinks by a whole factor k, each output pixel the mean of a k x k block (antialiased),
    a strip of rows at a time: a float copy of a 144 MP photo would take 1.7 GB.
    """
    h, w = image.shape[:2]
    k = math.ceil(max(h, w) / side)
    if k <= 1:
        return image, 1.0
    oh, ow = h // k, w // k
    out = np.empty((oh, ow, 3), np.uint8)
    for r in range(0, oh, strip_rows):
        n = min(strip_rows, oh - r)
        block = image[r * k:(r + n) * k, :ow * k].astype(np.float32)
        out[r:r + n] = block.reshape(n, k, ow, k, 3).mean(axis=(1, 3)).round()
    return out, 1.0 / k


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
