"""Tests for reading and writing model cards (age_tf.export_format, age_tf.train.card): a
broken or edited card is named with its field, never half-read or trusted."""

import copy
import json

import pytest

from age_tf import export_format
from age_tf.train import card

CARD = {"format": 1, "model": {"backbone": "mobilenet_v2", "tune": "head"},
        "weights": {"source": "standin"}, "data": {"name": "data"}, "synthetic": True,
        "preprocessing": {"image_size": 64, "crop_margin": 0.4},
        "intervals": {"coverage": 0.9, "edges": [10.0, 20.0], "half_widths": [5.0, 6.0, 7.0]}}


def test_no_card_is_none_and_a_written_card_reads_back(tmp_path):
    assert export_format.read_card(str(tmp_path / "none.json")) is None
    path = tmp_path / "old_export" / "assets" / export_format.CARD_ASSET  # no assets/ folder yet
    card.write(CARD, str(path))
    assert export_format.read_card(str(path)) == CARD


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"model": {}}', b"\xff\xfe"])
def test_a_broken_card_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "m.tflite.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"m\.tflite\.json: .*(not a|model card).*age-tf-export"):
        export_format.read_card(str(path))


def test_a_huge_card_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (export_format.MAX_CARD_BYTES + 1))
    with pytest.raises(ValueError, match="is not a model card"):
        export_format.read_card(str(path))


# Hostile-input item 10: a crop_margin of -5 or 1e6 was used (other ages), "abc" or NaN and
# "intervals": "abc" ended in errors naming neither card nor field, coverage 5 printed
# "500% interval", a card without `model` ended in a traceback.
@pytest.mark.parametrize("path, value, field", [
    (("preprocessing", "crop_margin"), -5, "preprocessing.crop_margin"),
    (("preprocessing", "crop_margin"), 1e6, "preprocessing.crop_margin"),
    (("preprocessing", "crop_margin"), "abc", "preprocessing.crop_margin"),
    (("preprocessing", "image_size"), 0, "preprocessing.image_size"),
    (("intervals",), "abc", "intervals"),
    (("intervals", "coverage"), 5, "intervals.coverage"),
    (("intervals", "edges"), [20.0, 10.0], "intervals.edges"),
    (("intervals", "half_widths"), [5.0, -1.0, 7.0], "intervals.half_widths"),
    (("intervals", "half_widths"), [5.0], "intervals.half_widths"),
    (("synthetic",), "no", "synthetic"),
    (("model",), None, "model"),
    (("model_sha256",), "beef", "model_sha256"),
])
def test_an_edited_card_is_refused_naming_the_field(tmp_path, path, value, field):
    edited = copy.deepcopy(CARD)
    target = edited
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    file = tmp_path / "model_card.json"
    file.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=rf"model_card.json: .*'{field}'"):
        export_format.read_card(str(file))


def test_nan_in_a_card_is_refused(tmp_path):
    file = tmp_path / "model_card.json"
    file.write_text(json.dumps(CARD).replace('"crop_margin": 0.4', '"crop_margin": NaN'))
    with pytest.raises(ValueError, match="'preprocessing.crop_margin' is NaN"):
        export_format.read_card(str(file))


def test_a_model_whose_digest_differs_from_its_card_is_refused(tmp_path):
    export = tmp_path / "export"
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"graph")
    (export / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights")
    digest = export_format.saved_model_sha256(str(export))
    (export / "assets").mkdir()
    (export / "assets" / "model_card.json").write_text("{}")  # the card is not hashed
    assert export_format.saved_model_sha256(str(export)) == digest
    export_format.check_digest({"model_sha256": digest}, "model_sha256", digest, str(export))
    (export / "variables" / "variables.data-00000-of-00001").write_bytes(b"weightz")
    with pytest.raises(ValueError, match="SHA-256 .* is not the one its card records"):
        export_format.check_digest({"model_sha256": digest}, "model_sha256",
                                   export_format.saved_model_sha256(str(export)), str(export))


def _tiny_tflite(tmp_path):
    """A real TFLite file with the served signature (a mean of the pixels), and its card."""
    import hashlib

    import tensorflow as tf

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="images")])
        def serve(self, images):
            return {"age": tf.reduce_mean(images, axis=[1, 2, 3])}

    module = Tiny()
    tf.saved_model.save(module, str(tmp_path / "sm"),
                        signatures={export_format.IMAGES_SIGNATURE: module.serve})
    data = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert()
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    tiny = {**copy.deepcopy(CARD), "file_sha256": hashlib.sha256(data).hexdigest()}
    tiny["preprocessing"]["image_size"] = 8
    card.write(tiny, export_format.card_path(str(path)))
    return path, data


@pytest.mark.integration
def test_a_damaged_tflite_file_is_refused_before_the_interpreter_reads_it(tmp_path):
    # Hostile-input item 11: a file cut to half or 64 bytes killed the process (exit 139),
    # random bytes gave a codec error, 4 KiB of flipped weights answered other ages.
    import numpy as np

    from age_tf.serve.served_model import AgeModel

    path, data = _tiny_tflite(tmp_path)
    ages = AgeModel(str(path)).ages(np.full((1, 8, 8, 3), 30.0, np.float32))
    assert np.allclose(ages, 30.0)
    for damaged in (data[: len(data) // 2], data[:64],
                    data[:-64] + bytes(b ^ 0xFF for b in data[-64:])):
        path.write_bytes(damaged)
        with pytest.raises(ValueError, match="SHA-256 .* is not the one its card records"):
            AgeModel(str(path))
    for junk in (b"", b"\x00" * 100, bytes(range(256)) * 4):
        path.write_bytes(junk)
        with pytest.raises(ValueError, match="not a TFLite file"):
            AgeModel(str(path))
