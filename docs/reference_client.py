"""A reference client: an age_tf .tflite model run with Pillow, numpy and LiteRT only.

  pip install pillow numpy ai-edge-litert
  python reference_client.py model.tflite face1.jpg face2.jpg ...

No TensorFlow: what a device or a small service runs. Each file is a face framed as the
model's training faces were (the card's `crop_margin` around the face box, as age-tf-predict
`--faces=given` expects). It reproduces age_tf's preprocessing, which the card states in
`preprocessing`: decode to RGB (the JPEG IDCT is libjpeg's accurate integer one, Pillow's
own), bilinear resize with half-pixel centres and no antialiasing (TensorFlow's
tf.image.resize, not Pillow's resize, which filters), round to uint8, feed float32 pixels in
[0, 255] (the model normalizes inside). Prints one line per file: age and its interval.
"""

import json
import sys

import numpy as np
from PIL import Image


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


def face_pixels(path: str, size: int) -> np.ndarray:
    """A face file -> the model's input [1, size, size, 3] float32, as age_tf prepares it."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    resized = resize_bilinear(rgb, size)
    pixels = np.clip(resized + 0.5, 0, 255).astype(np.uint8)  # round half up, as age_tf
    return pixels[None].astype(np.float32)


def load(model_path: str):
    """(signature runner, image size, card) of a .tflite file and its <file>.json card."""
    from ai_edge_litert.interpreter import Interpreter

    with open(model_path + ".json") as f:
        card = json.load(f)
    interpreter = Interpreter(model_path=model_path)
    runner = interpreter.get_signature_runner("serving_default")
    size = int(runner.get_input_details()["images"]["shape"][1])
    return runner, size, card


def predict(runner, size: int, paths: list[str]) -> list[dict]:
    """Age (and interval, when the model has one) of each face file, in years."""
    out = []
    for path in paths:
        result = runner(images=face_pixels(path, size))
        out.append({"file": path, **{k: float(v[0]) for k, v in result.items()}})
    return out


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit(__doc__)
    runner, size, card = load(argv[1])
    if card.get("warning"):
        print(f"warning: {card['warning']}", file=sys.stderr)
    for r in predict(runner, size, argv[2:]):
        interval = (f" (interval {r['age_low']:.1f}-{r['age_high']:.1f})"
                    if "age_low" in r else "")
        print(f"{r['file']}: {r['age']:.1f} years{interval}")


if __name__ == "__main__":
    main(sys.argv)
