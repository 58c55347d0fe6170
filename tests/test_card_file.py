"""Tests for reading and writing model cards (age_tf.export_format, age_tf.train.card): a broken card is named, never half-read."""

import pytest

from age_tf import export_format
from age_tf.train import card


def test_no_card_is_none_and_a_written_card_reads_back(tmp_path):
    assert export_format.read_card(str(tmp_path / "none.json")) is None
    path = tmp_path / "old_export" / "assets" / export_format.CARD_ASSET  # no assets/ folder yet
    card.write({"preprocessing": {"image_size": 64}}, str(path))
    assert export_format.read_card(str(path)) == {"preprocessing": {"image_size": 64}}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"model": {}}', b"\xff\xfe"])
def test_a_broken_card_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "m.tflite.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"m\.tflite\.json: not a .*model card.*age-tf-export"):
        export_format.read_card(str(path))


def test_a_huge_card_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (export_format.MAX_CARD_BYTES + 1))
    with pytest.raises(ValueError, match="is not a model card"):
        export_format.read_card(str(path))
