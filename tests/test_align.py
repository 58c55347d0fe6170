"""Tests for age_tf.data.align: the unified benchmark's square and warp, against faces the
renderer drew with known landmarks and known in-plane rotations."""

import numpy as np
import pytest

from age_tf.data import align
from age_tf.synthetic import faces


def _face(seed: int, roll: float, size: int = 200, age: float = 40.0):
    ident = faces.random_identity(np.random.default_rng(seed))
    return faces.render_face(np.random.default_rng(seed + 7), age, ident, size, roll=roll)


def _pupil(crop: np.ndarray, near) -> np.ndarray:
    """Centroid (x, y) of the dark pupil pixels within 6 px of `near`."""
    x0, y0 = (int(round(v)) - 6 for v in near)
    window = crop[y0:y0 + 13, x0:x0 + 13].astype(float).sum(-1) < 150
    ys, xs = np.nonzero(window)
    assert len(xs) > 3, "no pupil where the landmark says"
    return np.array([xs.mean() + x0, ys.mean() + y0])


def test_the_square_follows_the_benchmark_recipe():
    # Level eyes 40 px apart, mouth 40 px below their midpoint: the eye line and the mouth's
    # perpendicular agree; half side = max(1.92 * 40, 1.89 * 40); centre 4 px below the eyes.
    sq = align.square_from_points((40, 50), (80, 50), (60, 90))
    np.testing.assert_allclose(sq, [[-16.8, -22.8], [136.8, -22.8], [136.8, 130.8],
                                    [-16.8, 130.8]], atol=1e-9)
    # Either eye first; a 90-degree turn of the face turns the square with it.
    np.testing.assert_allclose(align.square_from_points((80, 50), (40, 50), (60, 90)), sq)
    turned = align.square_from_points((50, 40), (50, 80), (10, 60))
    assert np.allclose(np.sort(np.linalg.norm(turned - turned.mean(0), axis=1)),
                       np.linalg.norm(sq - sq.mean(0), axis=1))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rotated_faces_come_out_level_at_the_same_place(seed):
    """The same face drawn at rolls of -30 to +30 degrees: after alignment at 256 px its
    pupils (found in the pixels) sit where the landmarks say, at the same place in every
    crop within 2 px."""
    found = []
    for roll in (-30, -15, 0, 15, 30):
        image, marks = _face(seed, roll)
        square = align.square_from_landmarks(marks)
        crop = align.crop(np.asarray(image), square, 256).numpy()
        expected = align.where_in_crop([marks["left_eye"], marks["right_eye"]], square, 256)
        eyes = np.array([_pupil(crop, p) for p in expected])
        np.testing.assert_allclose(eyes, expected, atol=1.5)
        found.append(eyes)
    found = np.array(found)
    assert (found.max(0) - found.min(0)).max() <= 2.0


def test_frontal_faces_eye_line_is_horizontal_within_a_pixel():
    """The square's x axis averages the eye line with the mouth's perpendicular: for faces
    whose mouth is centred under the eyes (frontal), the eye line comes out level."""
    level = []
    for seed in range(60):
        roll = np.random.default_rng(100 + seed).uniform(-30, 30)
        _, marks = _face(seed, roll, age=float(np.random.default_rng(seed).uniform(1, 90)))
        le, re = np.array(marks["left_eye"]), np.array(marks["right_eye"])
        mouth = (np.array(marks["mouth_left"]) + np.array(marks["mouth_right"])) / 2
        off = np.dot(mouth - (le + re) / 2, (re - le) / np.linalg.norm(re - le))
        if abs(off) < 0.02 * np.linalg.norm(re - le):
            eyes = align.where_in_crop([le, re], align.square_from_landmarks(marks), 256)
            level.append(abs(eyes[1, 1] - eyes[0, 1]))
    assert len(level) > 15 and max(level) <= 1.0


def test_aligned_bbox_crop_equals_the_landmark_crop_within_a_pixel():
    image, marks = _face(4, 20, size=256)
    square = align.square_from_landmarks(marks)
    stored = align.bbox_corners(align.to_bbox_numbers(square))  # 1-based whole pixels, back
    assert np.abs(stored - square).max() <= 0.5 + 1e-9
    a = align.crop(np.asarray(image), square, 256).numpy().astype(float)
    b = align.crop(np.asarray(image), stored, 256).numpy().astype(float)
    eyes = [marks["left_eye"], marks["right_eye"]]
    moved = align.where_in_crop(eyes, stored, 256) - align.where_in_crop(eyes, square, 256)
    assert np.abs(moved).max() <= 1.0
    assert np.mean(np.abs(a - b)) < 12  # the same picture, shifted by under a pixel


def test_outside_the_photo_is_black_and_bad_boxes_are_named():
    image = np.full((50, 50, 3), 200, np.uint8)
    crop = align.crop(image, np.array([[-50, -50], [99, -50], [99, 99], [-50, 99]], float), 30)
    crop = crop.numpy()
    assert crop[0, 0].max() == 0 and crop[15, 15].min() == 200
    with pytest.raises(ValueError, match="8 numbers"):
        align.bbox_corners([1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="no area"):
        align.bbox_corners([5] * 8)
    with pytest.raises(ValueError, match="coincide"):
        align.square_from_points((1, 1), (1, 1), (1, 1))


@pytest.mark.integration
def test_grace_hopper_aligned_crop_has_a_level_eye_line():
    """A real photo: MTCNN's landmarks align her face; found again in the aligned crop, her
    eyes are level (within 2 px at 256)."""
    from matplotlib import cbook
    from PIL import Image

    from age_tf.serve import photos

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        image = np.asarray(Image.open(f).convert("RGB"))
    detector = photos.FaceDetector()
    (face,) = photos.find_faces("grace_hopper.jpg", image, detector)
    le, re = np.array(face.landmarks["left_eye"]), np.array(face.landmarks["right_eye"])
    tilt = np.degrees(np.arctan2(*(re - le)[::-1]))
    crop = align.crop(image, align.square_from_landmarks(face.landmarks), 256).numpy()
    (again,) = photos.find_faces("crop", crop, detector)
    dy = again.landmarks["right_eye"][1] - again.landmarks["left_eye"][1]
    assert abs(tilt) > 2 and abs(dy) <= 2.0, (tilt, dy)
