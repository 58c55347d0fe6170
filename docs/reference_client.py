"""A reference client: an age_tf .tflite model run with Pillow, numpy and LiteRT only.

  pip install pillow numpy ai-edge-litert
  python reference_client.py model.tflite face1.jpg face2.jpg ...
  python reference_client.py model.tflite --thresholds=18,25 --decision_error=0.05 face.jpg

No TensorFlow: what a device or a small service runs. Each file is a face framed as the
model's training faces were (the card's `crop_margin` around the face box, as age-tf-predict
`--faces=given` expects). It reproduces age_tf's preprocessing, which the card states in
`preprocessing`: decode to RGB (the JPEG IDCT is libjpeg's accurate integer one, Pillow's
own), bilinear resize with half-pixel centres and no antialiasing (TensorFlow's
tf.image.resize, not Pillow's resize, which filters), round to uint8, feed float32 pixels in
[0, 255] (the model normalizes inside). Prints one line per file as it goes: age and interval.

With --thresholds, each face is also called over, under or uncertain at each threshold, by
cuts calibrated from the card's validation pairs exactly as age-tf-predict calibrates them
(label-conditional split conformal: at most --decision_error of faces under a threshold
called over, and of faces at or over it called under).

Careful as age-tf-predict is: the model must be the bytes its card (<model>.json) describes
(SHA-256), else nothing runs; a file that is not a readable image of sane size gets one line
on stderr naming it, and the exit status is 1 if any did.
"""

import hashlib
import io
import json
import math
import os
import stat
import sys
import warnings

import numpy as np
from PIL import Image

MAX_MODEL_BYTES = 1 << 30
MAX_CARD_BYTES = 16 << 20
MAX_FACE_BYTES = 64 << 20
MAX_FACE_PIXELS = 50_000_000  # a face crop; a larger image is refused before it is decoded


class Refused(Exception):
    """A model or face file that cannot be used; the message names it and says why."""


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [size, size, 3]: tf.image.resize(method="bilinear")."""

    def weights(n_in: int):
        scale = n_in / size
        pos = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(scale) - 0.5
        floor = np.floor(pos)
        low = np.maximum(floor, 0).astype(np.int64)
        high = np.minimum(np.ceil(pos), n_in - 1).astype(np.int64)
        return low, high, (pos - floor).astype(np.float32)

    y0, y1, dy = weights(image.shape[0])
    x0, x1, dx = weights(image.shape[1])
    img = image.astype(np.float32)
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * dx[None, :, None]
    bottom = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * dx[None, :, None]
    return top + (bottom - top) * dy[:, None, None]


def read_regular(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes (a FIFO or device would block or
    never end; it is refused before it is opened)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise Refused(f"{path}: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{path}: not a regular file")
    if st.st_size > max_bytes:
        raise Refused(f"{path}: {st.st_size:,} bytes is more than {max_bytes:,}")
    with open(path, "rb") as f:
        return f.read(max_bytes + 1)


def face_pixels(path: str, size: int) -> np.ndarray:
    """A face file -> the model's input [1, size, size, 3] float32, as age_tf prepares it."""
    data = read_regular(path, MAX_FACE_BYTES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_FACE_PIXELS:
                    raise Refused(f"{path}: {im.width}x{im.height} pixels is more than a face "
                                  f"crop ({MAX_FACE_PIXELS:,} at most)")
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise Refused(f"{path}: not a readable image ({e})") from e
    resized = resize_bilinear(rgb, size)
    pixels = np.clip(resized + 0.5, 0, 255).astype(np.uint8)  # round half up, as age_tf
    return pixels[None].astype(np.float32)


def load(model_path: str):
    """(signature runner, image size, card) of a .tflite file and its <file>.json card,
    after checking the file's type and that its bytes are the ones the card describes."""
    from ai_edge_litert.interpreter import Interpreter

    data = read_regular(model_path, MAX_MODEL_BYTES)
    if data[4:8] != b"TFL3":
        raise Refused(f"{model_path}: not a TFLite file (no TFL3 identifier)")
    card_path = model_path + ".json"
    try:
        card = json.loads(read_regular(card_path, MAX_CARD_BYTES))
    except (Refused, ValueError) as e:
        raise Refused(f"{card_path}: the model's card is missing or unreadable ({e}); export "
                      "the model with age-tf-export, which writes it") from e
    want = card.get("file_sha256") if isinstance(card, dict) else None
    if want != hashlib.sha256(data).hexdigest():
        raise Refused(f"{model_path}: its bytes are not the ones {card_path} describes "
                      "(SHA-256 differs or is absent): damaged or replaced; export it again")
    try:
        runner = Interpreter(model_content=data).get_signature_runner("serving_default")
        size = int(runner.get_input_details()["images"]["shape"][1])
    except (ValueError, RuntimeError, KeyError) as e:
        raise Refused(f"{model_path}: LiteRT cannot run it ({e})") from e
    return runner, size, card


def predict_one(runner, size: int, path: str) -> dict:
    """Age (and interval, when the model has one) of one face file, in years."""
    result = runner(images=face_pixels(path, size))
    return {"file": path, **{k: float(v[0]) for k, v in result.items()}}


def predict(runner, size: int, paths: list[str]) -> list[dict]:
    return [predict_one(runner, size, p) for p in paths]


def cuts(card: dict, thresholds: list[float], error: float) -> dict:
    """{threshold: (over above, under below)} from the card's validation pairs: over only
    above the ceil((n + 1)(1 - error))-th smallest prediction of the n faces under the
    threshold, under only below the same order statistic, from the top, of those at or over."""
    if not 0 < error < 0.5:
        raise ValueError(f"--decision_error must be in (0, 0.5), got {error}")
    sample = card.get("decisions") or {}
    ages = np.asarray(sample.get("ages", []), np.float64)
    pred = np.asarray(sample.get("predicted", []), np.float64)
    if not len(ages) or len(ages) != len(pred):
        raise Refused("the model's card has no decision calibration: leave out --thresholds")

    def order_stat(values):
        k = math.ceil((len(values) + 1) * (1 - error) - 1e-9)
        return float(np.sort(values)[k - 1]) if k <= len(values) else math.inf

    return {t: (order_stat(pred[ages < t]), -order_stat(-pred[ages >= t])) for t in thresholds}


def decide(age: float, over_above: float, under_below: float) -> str:
    p = float(np.round(age, 2))  # predictions are compared to 0.01 years, as age_tf does
    over, under = p > over_above, p < under_below
    if over and under:  # the cuts cross: their midpoint decides
        over = p >= (over_above + under_below) / 2
        under = not over
    return "over" if over else "under" if under else "uncertain"


def main(argv: list[str]) -> int:
    options = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    argv = [a for a in argv if not a.startswith("--")]
    if len(argv) < 3 or set(options) - {"thresholds", "decision_error"}:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        runner, size, card = load(argv[1])
        thresholds = sorted({float(t) for t in options.get("thresholds", "").split(",") if t})
        calibrated = cuts(card, thresholds, float(options.get("decision_error", 0.05))) \
            if thresholds else {}
    except (Refused, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if card.get("warning"):
        print(f"warning: {card['warning']}", file=sys.stderr)
    status = 0
    for path in argv[2:]:
        try:
            r = predict_one(runner, size, path)
        except Refused as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            status = 1
            continue
        interval = (f" (interval {r['age_low']:.1f}-{r['age_high']:.1f})"
                    if "age_low" in r else "")
        calls = "".join(f"; {decide(r['age'], *c)} {t:g}" for t, c in calibrated.items())
        print(f"{r['file']}: {r['age']:.1f} years{interval}{calls}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
