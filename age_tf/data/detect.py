"""Faces and their five landmarks in photos of any size: MTCNN, bounded in time and memory.

MTCNN (a TensorFlow face detector whose weights ship inside its wheel, so it runs offline)
searches a copy of the photo at most DETECT_SIDE pixels a side, in overlapping tiles above
twice DETECT_TILE; boxes and landmarks are given in the photo's own pixels. Used to crop
faces for prediction (serve/photos.py) and to align faces when preparing data.
"""

from __future__ import annotations

import math

import numpy as np

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


# Per worker process: one detector for every image it is given (MTCNN's three networks take
# seconds to build).
_WORKER_DETECTOR: FaceDetector | None = None


def landmark_squares(job: tuple[list[str], int, float]) -> list[tuple[str, str]]:
    """(aligned square as data/align.py's text, '' or why not) for each image path of a
    job (paths, detect_side, min_confidence): the largest face's landmarks. Runs in a worker
    process; memory holds one image at a time."""
    from age_tf.data import align, pipeline  # in the worker: TensorFlow only here

    global _WORKER_DETECTOR
    paths, side, confidence = job
    if _WORKER_DETECTOR is None:
        _WORKER_DETECTOR = FaceDetector(min_confidence=confidence, detect_side=side)
    out = []
    for path in paths:
        try:
            image = pipeline.read_image(path)
        except Exception as e:  # noqa: BLE001  (any decode failure is this image's reason)
            out.append(("", f"not decoded for alignment ({type(e).__name__})"))
            continue
        faces = _WORKER_DETECTOR(image)
        if not faces:
            out.append(("", "no face with landmarks found for alignment (MTCNN)"))
            continue
        box, _, marks = max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
        try:
            out.append((align.corners_text(align.square_from_landmarks(marks)), ""))
        except (KeyError, ValueError) as e:
            out.append(("", f"landmarks unusable for alignment ({e})"))
    return out
