"""Renders synthetic face crops whose look depends on age (for the offline IMDB-WIKI stand-in).

Age shows in many weak cues, none decisive alone, so that a model has to combine them:
head proportions (children have a large cranium, low-set big eyes, a small nose and chin),
hair colour greying and the hairline receding, wrinkles and eye bags, skin texture and
spots, jowls. Identity (skin tone, hair, face shape, beard) and the photo (pose, scale,
lighting, background, blur, JPEG quality) vary independently of age.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 160), (224, 172, 132), (198, 134, 96), (160, 102, 66),
     (120, 76, 48), (92, 58, 38)],
    dtype=np.float64,
)
# The tones above in three groups (light to dark, as Fitzpatrick types I-II, III-IV, V-VI
# group them): what error by skin tone is reported against.
SKIN_GROUPS = ("I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI", "V-VI")
_HAIR = np.array(
    [(20, 16, 14), (60, 40, 25), (105, 70, 40), (170, 130, 80), (220, 190, 120), (140, 60, 30)],
    dtype=np.float64,
)
_EYES = [(60, 40, 25), (40, 90, 140), (70, 110, 70), (30, 25, 20)]


@dataclasses.dataclass
class Identity:
    """Traits of one person that do not change with age."""

    gender: int  # 1 male, 0 female
    skin: tuple
    skin_group: str  # SKIN_GROUPS of its tone
    hair: tuple
    eye: tuple
    face_width: float  # relative width of the face oval
    jaw: float  # squareness of the jaw
    nose: float  # nose size factor
    recedes: bool  # hairline recedes with age
    grey_onset: float  # age at which greying starts
    beard: bool
    long_hair: bool


def random_identity(rng: np.random.Generator) -> Identity:
    gender = int(rng.random() < 0.6)
    tone = int(rng.integers(len(_SKIN_TONES)))
    skin = _SKIN_TONES[tone] * rng.uniform(0.92, 1.06)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.15)
    return Identity(
        gender=gender,
        skin=tuple(np.clip(skin, 0, 255)),
        skin_group=SKIN_GROUPS[tone],
        hair=tuple(np.clip(hair, 0, 255)),
        eye=_EYES[rng.integers(len(_EYES))],
        face_width=float(rng.uniform(0.9, 1.1)),
        jaw=float(rng.uniform(0.0, 1.0)),
        nose=float(rng.uniform(0.85, 1.2)),
        recedes=bool(rng.random() < (0.55 if gender else 0.1)),
        grey_onset=float(rng.normal(38, 7)),
        beard=bool(gender and rng.random() < 0.35),
        long_hair=bool(rng.random() < (0.15 if gender else 0.75)),
    )


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _mix(a, b, t: float) -> tuple:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    if rng.random() < 0.5:
        grad = c0 * (1 - t) + c1 * t
        arr = np.broadcast_to(grad, (size, size, 3))
    else:
        arr = np.broadcast_to((c0 * (1 - t) + c1 * t).transpose(1, 0, 2), (size, size, 3))
    img = Image.fromarray(np.ascontiguousarray(arr).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 5)):  # Clutter: other objects, scenery.
        x, y = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.1, 0.5, 2) * size
        col = tuple(int(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            draw.rectangle([x, y, x + w, y + h], fill=col)
        else:
            draw.ellipse([x, y, x + w, y + h], fill=col)
    return img


LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # MTCNN's five


def render_face(
    rng: np.random.Generator, age: float, ident: Identity, size: int, second_face: bool = False,
    roll: float = 0.0,
) -> tuple[Image.Image, dict[str, tuple[float, float]]]:
    """Renders one RGB face crop of `size` x `size` pixels at the given age.

    Returns:
      (the image, the five landmarks of its (first) face as drawn: {LANDMARKS name: (x, y)}
      in 0-based pixel coordinates, "left" meaning the image's left).

    Args:
      roll: degrees the face is turned in-plane beyond its own small head roll
        (counter-clockwise as seen); no random draw depends on it.
    """
    img = _background(rng, size)
    faces = [(0.5, 0.52, 1.0)]
    if second_face:  # A smaller, partly cut second person beside the first.
        faces = [(0.36, 0.55, 0.8), (0.82, 0.5, 0.6)]
    landmarks = None
    for cx, cy, rel in faces:
        layer, points = _face_layer(rng, age if rel >= 0.8 else rng.uniform(5, 80), ident, size,
                                    rel, roll)
        cxp = int((cx + rng.normal(0, 0.03)) * size - size / 2)
        cyp = int((cy + rng.normal(0, 0.03)) * size - size / 2)
        img.paste(layer, (cxp, cyp), layer)
        if landmarks is None:
            landmarks = {k: (x + cxp, y + cyp) for k, (x, y) in points.items()}
    img = _lighting(rng, img)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * size / 128))
    return img, landmarks


def _rotated(points: dict, degrees: float, size: int) -> dict:
    """Where PIL's Image.rotate(degrees) (about the image centre, counter-clockwise as seen)
    moves points given in 0-based pixel coordinates (a pixel's centre is its index)."""
    a = np.deg2rad(degrees)
    c = (size - 1) / 2  # PIL turns about (size / 2) in corner coordinates: this pixel centre
    out = {}
    for k, (x, y) in points.items():
        dx, dy = x - c, y - c
        out[k] = (c + np.cos(a) * dx + np.sin(a) * dy, c - np.sin(a) * dx + np.cos(a) * dy)
    return out


def _lighting(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    size = arr.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    shade = 1 + rng.uniform(0, 0.35) * (np.cos(angle) * xx + np.sin(angle) * yy)
    gain = rng.uniform(0.75, 1.2) * np.array(rng.uniform(0.92, 1.08, 3), dtype=np.float32)
    arr = arr * shade[..., None] * gain + rng.normal(0, 2.0, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _face_layer(
    rng: np.random.Generator, age: float, ident: Identity, size: int, rel: float,
    roll: float = 0.0,
) -> tuple[Image.Image, dict]:
    """Draws the head on a transparent layer, centred, then rotates it (head roll, plus
    `roll` degrees); returns it and its five landmarks (layer pixels)."""
    growth = _ramp(age, 0, 18)  # 0 newborn -> 1 adult proportions
    wrinkle = _ramp(age, 30, 80)
    sag = _ramp(age, 50, 90)
    grey = _ramp(age, ident.grey_onset, ident.grey_onset + 30)
    recede = _ramp(age, 25, 65) * (0.8 if ident.recedes else 0.1)

    scale = rng.uniform(0.52, 0.68) * rel * size  # head height in px (crop has a 40% margin)
    yaw = rng.normal(0, 0.06)  # horizontal feature shift, a cheap pose cue
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = size / 2, size / 2
    head_h = scale
    head_w = head_h * (0.88 - 0.12 * growth) * ident.face_width * (1 + 0.05 * sag)
    skin = ident.skin
    hair_col = _mix(ident.hair, (215, 215, 212), grey)
    skin_dark = _mix(skin, (60, 40, 30), 0.35)

    top, bottom = cy - head_h / 2, cy + head_h / 2
    left, right = cx - head_w / 2, cx + head_w / 2
    # Hair behind the head.
    if ident.long_hair:
        d.rounded_rectangle(
            [left - 0.08 * head_w, top - 0.04 * head_h, right + 0.08 * head_w, bottom - 0.05 * head_h],
            radius=head_w * 0.4, fill=hair_col + (255,),
        )
    # Neck and head.
    d.rectangle([cx - head_w * 0.22, cy + head_h * 0.3, cx + head_w * 0.22, cy + head_h * 0.75], fill=skin_dark + (255,))
    jaw_w = head_w * (0.55 + 0.25 * ident.jaw * growth + 0.1 * sag)
    d.ellipse([left, top, right, bottom - 0.1 * head_h], fill=tuple(int(v) for v in skin) + (255,))
    d.ellipse([cx - jaw_w / 2, cy - 0.05 * head_h, cx + jaw_w / 2, bottom + 0.02 * head_h * sag],
              fill=tuple(int(v) for v in skin) + (255,))

    # Proportions: children's eyes sit low on a big cranium; adults' near the middle.
    eye_y = top + head_h * (0.58 - 0.11 * growth)
    eye_dx = head_w * 0.2
    eye_r = head_h * (0.065 - 0.02 * growth)
    ex = cx + yaw * head_w
    # Hair on top: hairline rises with recession; hair thins (lighter alpha) with age.
    hairline = top + head_h * (0.16 + 0.16 * recede)
    hair_alpha = int(255 * (1 - 0.5 * _ramp(age, 55, 95) * (1 if ident.recedes else 0.3)))
    if age >= 1:
        d.chord([left - 0.02 * head_w, top - 0.06 * head_h, right + 0.02 * head_w, hairline + (hairline - top)],
                180, 360, fill=hair_col + (hair_alpha,))
    if recede > 0.3:  # Bald crown shows skin through the thin hair.
        d.ellipse([cx - head_w * 0.25 * recede, top, cx + head_w * 0.25 * recede, top + head_h * 0.2 * recede],
                  fill=tuple(int(v) for v in skin) + (255,))

    brow_col = _mix(ident.hair, (200, 200, 200), grey * 0.8) + (255,)
    brow_w = max(1, int(head_h * (0.012 + 0.018 * growth)))
    for side in (-1, 1):
        x = ex + side * eye_dx
        d.line([x - eye_r * 1.3, eye_y - eye_r * 1.6, x + eye_r * 1.3, eye_y - eye_r * 1.8 + side * 0.0],
               fill=brow_col, width=brow_w)
        d.ellipse([x - eye_r * 1.2, eye_y - eye_r * 0.7, x + eye_r * 1.2, eye_y + eye_r * 0.7], fill=(245, 245, 240, 255))
        d.ellipse([x - eye_r * 0.6, eye_y - eye_r * 0.6, x + eye_r * 0.6, eye_y + eye_r * 0.6], fill=ident.eye + (255,))
        d.ellipse([x - eye_r * 0.25, eye_y - eye_r * 0.25, x + eye_r * 0.25, eye_y + eye_r * 0.25], fill=(10, 10, 10, 255))
        # Bags under the eyes, then crow's feet.
        if age > 40:
            a = int(160 * _ramp(age, 40, 85))
            d.arc([x - eye_r * 1.2, eye_y, x + eye_r * 1.2, eye_y + eye_r * 1.6], 20, 160, fill=skin_dark + (a,), width=max(1, brow_w // 2))
        for k in range(int(round(3 * wrinkle))):
            a = int(200 * wrinkle)
            y0 = eye_y + (k - 1) * eye_r * 0.5
            x0 = x + side * eye_r * 1.3
            d.line([x0, y0, x0 + side * eye_r * 0.9, y0 + (k - 1) * eye_r * 0.35], fill=skin_dark + (a,), width=1)

    # Forehead lines.
    for k in range(int(round(1 + 4 * wrinkle)) if wrinkle > 0.05 else 0):
        y = hairline + (eye_y - eye_r * 2 - hairline) * (0.3 + 0.14 * k)
        a = int(220 * wrinkle * rng.uniform(0.6, 1.0))
        d.arc([cx - head_w * 0.3, y - head_h * 0.02, cx + head_w * 0.3, y + head_h * 0.03], 200, 340,
              fill=skin_dark + (a,), width=max(1, int(head_h * 0.008)))

    # Nose: longer in adults, longer still in old age.
    nose_len = head_h * (0.08 + 0.08 * growth + 0.03 * sag) * ident.nose
    nose_w = head_w * (0.08 + 0.05 * growth) * ident.nose
    nx = cx + yaw * head_w * 1.3
    d.line([nx, eye_y + eye_r, nx + nose_w * 0.3, eye_y + nose_len], fill=skin_dark + (180,), width=max(1, brow_w // 2))
    d.ellipse([nx - nose_w / 2, eye_y + nose_len - nose_w * 0.35, nx + nose_w / 2, eye_y + nose_len + nose_w * 0.25],
              fill=skin_dark + (110,))

    # Mouth; lips thin with age. Nasolabial folds and jowls after 45.
    mouth_y = eye_y + nose_len + head_h * (0.07 + 0.05 * growth)
    mouth_w = head_w * (0.22 + 0.1 * growth)
    lip_h = head_h * (0.035 - 0.018 * _ramp(age, 40, 90))
    lip_col = _mix(skin, (170, 60, 60), 0.45 - 0.25 * _ramp(age, 40, 90))
    d.ellipse([nx - mouth_w / 2, mouth_y - lip_h, nx + mouth_w / 2, mouth_y + lip_h], fill=lip_col + (255,))
    if age > 45:
        a = int(200 * _ramp(age, 45, 85))
        for side in (-1, 1):
            d.line([nx + side * nose_w * 0.8, eye_y + nose_len, nx + side * mouth_w * 0.65, mouth_y + lip_h * 2],
                   fill=skin_dark + (a,), width=max(1, brow_w // 2))
    if sag > 0:
        a = int(150 * sag)
        d.arc([cx - jaw_w / 2, mouth_y - head_h * 0.1, cx + jaw_w / 2, bottom + 0.03 * head_h], 20, 160,
              fill=skin_dark + (a,), width=max(1, brow_w // 2))

    # Beard on adult men, greying with the hair.
    if ident.beard and age >= 18:
        a = int(230 * _ramp(age, 16, 25))
        d.chord([cx - jaw_w / 2, mouth_y - head_h * 0.08, cx + jaw_w / 2, bottom + 0.02 * head_h], 0, 180,
                fill=hair_col + (a,))
        d.ellipse([nx - mouth_w / 2, mouth_y - lip_h, nx + mouth_w / 2, mouth_y + lip_h], fill=lip_col + (255,))

    layer = _skin_texture(rng, layer, age)
    # Drawing coordinates are pixel corners; a pixel's centre is half a pixel in.
    points = {"left_eye": (ex - eye_dx - 0.5, eye_y - 0.5),
              "right_eye": (ex + eye_dx - 0.5, eye_y - 0.5),
              "nose": (nx - 0.5, eye_y + nose_len - 0.5),
              "mouth_left": (nx - mouth_w / 2 - 0.5, mouth_y - 0.5),
              "mouth_right": (nx + mouth_w / 2 - 0.5, mouth_y - 0.5)}
    degrees = rng.normal(0, 7) + roll
    return (layer.rotate(degrees, resample=Image.Resampling.BILINEAR),
            _rotated(points, degrees, size))


def _skin_texture(rng: np.random.Generator, layer: Image.Image, age: float) -> Image.Image:
    """Adds pore noise that coarsens with age, and age spots after 55."""
    arr = np.asarray(layer, dtype=np.float32).copy()
    size = arr.shape[0]
    amp = 2 + 9 * _ramp(age, 20, 85)
    coarse = rng.normal(0, 1, (size // 4 + 1, size // 4 + 1)).repeat(4, 0).repeat(4, 1)[:size, :size]
    fine = rng.normal(0, 1, (size, size))
    noise = amp * (0.6 * coarse + 0.4 * fine)
    arr[..., :3] += noise[..., None]
    n_spots = int(rng.poisson(12 * _ramp(age, 55, 95)))
    alpha = arr[..., 3]
    for _ in range(n_spots):
        y, x = rng.integers(0, size, 2)
        if alpha[y, x] > 0:
            r = max(1, int(size * rng.uniform(0.005, 0.015)))
            arr[max(0, y - r): y + r, max(0, x - r): x + r, :3] *= 0.8
    arr[..., 3] = alpha
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")


def render_scene_without_face(rng: np.random.Generator, size: int) -> Image.Image:
    """A background with clutter and no face, for the release's 'no face found' rows."""
    return _lighting(rng, _background(rng, size))


def photo_counts(rng: np.random.Generator, total: int, mean: float) -> list[int]:
    """Photos per person: geometric draws with this mean, the last cut so they sum to total."""
    counts: list[int] = []
    while sum(counts) < total:
        counts.append(int(rng.geometric(1.0 / mean)))
    counts[-1] -= sum(counts) - total
    return counts


def render_jpegs(jobs: list[tuple]) -> list[bytes]:
    """JPEG bytes of faces given as (identity seed, render seed, age, size, quality, grey)."""
    out = []
    for ident_seed, seed, age, size, quality, grey in jobs:
        ident = random_identity(np.random.default_rng(ident_seed))
        img, _ = render_face(np.random.default_rng(seed), age, ident, size)
        buf = io.BytesIO()
        (img.convert("L") if grey else img).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out
