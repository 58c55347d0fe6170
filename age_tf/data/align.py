"""Face alignment as the unified benchmark does it: a rotated square from the eyes and mouth,
cropped by one affine warp.

The square (Paplhám et al., CVPR 2024; their `get_alignment_transformation`, itself the
FFHQ recipe): its centre is the eyes' midpoint moved a tenth of the way to the mouth; its
orientation averages the eye line with the perpendicular of the eye-to-mouth line; its half
side is the larger of 1.92 x the eye distance and 1.89 x the eye-to-mouth distance. The
benchmark's database files store it as `aligned_bbox`: the four corners (x, y) clockwise from
top-left, as integers, which its cropper reads as 1-based pixels. The crop maps corner A to
the output's top-left pixel, B to the top-right and C to the bottom-right (one affine
transform), sampling bilinearly; what lies outside the photo is black (OpenCV's warpAffine
default, which the benchmark uses).

One module for training (the tf.data pipeline) and serving (age-tf-predict's photos): the
square and the warp are computed here only.
"""

from __future__ import annotations

import numpy as np

EYE_TO_EYE = 1.92  # the benchmark's alignment_config.yaml
EYE_TO_MOUTH = 1.89
MOUTH_SHIFT = 0.1  # the centre moves this share of the eye-to-mouth vector
CORNERS = 4
BBOX_NUMBERS = 2 * CORNERS  # aligned_bbox: x1 y1 x2 y2 x3 y3 x4 y4


def square_from_points(eye_a, eye_b, mouth) -> np.ndarray:
    """The aligned square [4, 2] (x, y; 0-based pixels) of two eye centres and the mouth's
    centre (either eye first: the order is taken from where the mouth is).

    Raises:
      ValueError: the points coincide (no face to align).
    """
    eye_a, eye_b, mouth = (np.asarray(p, np.float64) for p in (eye_a, eye_b, mouth))
    eye_avg = (eye_a + eye_b) / 2
    to_mouth = mouth - eye_avg
    across = eye_b - eye_a
    # The eye vector must point to the face's left as seen (x grows) when the mouth is
    # below: rotating eye-to-mouth by -90 degrees gives that direction.
    if np.dot(across, [to_mouth[1], -to_mouth[0]]) < 0:
        across = -across
    x = across + np.array([to_mouth[1], -to_mouth[0]])
    norm = np.hypot(*x)
    if not norm > 0:
        raise ValueError("the eyes and mouth coincide: no face to align")
    half = max(np.hypot(*across) * EYE_TO_EYE, np.hypot(*to_mouth) * EYE_TO_MOUTH)
    x = x / norm * half
    y = np.array([-x[1], x[0]])  # x turned 90 degrees (image y grows downwards)
    c = eye_avg + MOUTH_SHIFT * to_mouth
    return np.stack([c - x - y, c + x - y, c + x + y, c - x + y])


def square_from_landmarks(landmarks: dict) -> np.ndarray:
    """The aligned square of MTCNN-style landmarks {left_eye, right_eye, mouth_left,
    mouth_right, ...: (x, y)}."""
    mouth = (np.asarray(landmarks["mouth_left"], float) + np.asarray(landmarks["mouth_right"],
                                                                      float)) / 2
    return square_from_points(landmarks["left_eye"], landmarks["right_eye"], mouth)


def bbox_corners(numbers, one_based: bool = True) -> np.ndarray:
    """An `aligned_bbox` (8 numbers) as 0-based corners [4, 2]; the benchmark's files are
    1-based.

    Raises:
      ValueError: not 8 finite numbers, or corners that enclose no area.
    """
    values = np.asarray(numbers, np.float64).reshape(-1)
    if values.size != BBOX_NUMBERS:
        raise ValueError(f"aligned_bbox needs {BBOX_NUMBERS} numbers (four corners x, y), got "
                         f"{values.size}")
    if not np.isfinite(values).all():
        raise ValueError(f"aligned_bbox needs {BBOX_NUMBERS} numbers (four corners x, y), but "
                         f"{int((~np.isfinite(values)).sum())} of its values are not numbers "
                         "(text, null or NaN)")
    corners = values.reshape(CORNERS, 2) - (1.0 if one_based else 0.0)
    if np.hypot(*(corners[1] - corners[0])) < 1 or np.hypot(*(corners[2] - corners[1])) < 1:
        raise ValueError("aligned_bbox encloses no area (its corners coincide)")
    return corners


def to_bbox_numbers(corners: np.ndarray) -> list[int]:
    """0-based corners as the benchmark writes them: 1-based, rounded to whole pixels."""
    return [int(v) for v in np.round(np.asarray(corners, np.float64) + 1).reshape(-1)]


def corners_text(corners: np.ndarray) -> str:
    """0-based corners as a manifest stores them (8 numbers, space-separated)."""
    return " ".join(f"{v:.2f}" for v in np.asarray(corners, np.float64).reshape(-1))


def parse_corners_text(text: str) -> np.ndarray:
    """The manifest's `aligned_bbox` back into corners [4, 2] (0-based)."""
    return bbox_corners([float(v) for v in str(text).split()], one_based=False)


def transform(corners, size: int, extension: float = 0.0) -> np.ndarray:
    """The projective transform (8 numbers, tf.raw_ops.ImageProjectiveTransformV3's) that maps
    each pixel of a size x size crop to the photo: A to (0, 0), B to (size-1, 0), C to
    (size-1, size-1), with the square widened by `extension` of its side on each side.

    Pixel centres are whole numbers in both images, as in OpenCV's warpAffine.
    """
    a, b, c = (np.asarray(corners, np.float64)[i] for i in range(3))
    ab, bc = b - a, c - b
    a = a - extension * (ab + bc)
    ab, bc = ab * (1 + 2 * extension), bc * (1 + 2 * extension)
    step = max(size - 1, 1)
    return np.array([ab[0] / step, bc[0] / step, a[0], ab[1] / step, bc[1] / step, a[1], 0, 0],
                    np.float32)


def warp(image, transforms, size: int):
    """Crops [H, W, 3] (or a batch [N, H, W, 3]) by transforms ([8] or [N, 8]) to size x size,
    bilinear, black outside the photo; returns the image's dtype."""
    # Imported here: the release readers use this module's geometry, and age-tf-prepare
    # (and its --help) runs without loading TensorFlow.
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    batched = image.shape.rank == 4
    images = image if batched else image[None]
    t = tf.reshape(tf.cast(transforms, tf.float32), [-1, 8])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32), transforms=t,
        output_shape=tf.constant([size, size], tf.int32), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    if image.dtype == tf.uint8:
        out = tf.saturate_cast(tf.round(out), tf.uint8)
    else:
        out = tf.cast(out, image.dtype)
    return out if batched else out[0]


def crop(image, corners, size: int, extension: float = 0.0):
    """The aligned crop of one photo (numpy or tensor [H, W, 3]) from 0-based corners."""
    return warp(image, transform(corners, size, extension), size)


def where_in_crop(points, corners, size: int, extension: float = 0.0) -> np.ndarray:
    """Where photo points [K, 2] land in the crop (the inverse of `transform`)."""
    t = transform(corners, size, extension)
    m = np.array([[t[0], t[1], t[2]], [t[3], t[4], t[5]], [0, 0, 1]], np.float64)
    p = np.c_[np.asarray(points, np.float64).reshape(-1, 2), np.ones(len(points))]
    return (np.linalg.solve(m, p.T).T)[:, :2]
