"""FG-NET: images/{person:03d}A{age:02d}[letter].JPG, 1,002 photos of 82 people aged 0-69.

Age and person are in the name (the letter tells photos of one age apart; the extension's
case varies). The classic protocol is leave-one-person-out; the unified benchmark tests on
all of it as another dataset. The release has no split: people are split as for IMDB-WIKI.
"""

from __future__ import annotations

import os
import re

import numpy as np

from age_tf.data.metadata import read_release
from age_tf.data.sources import common

IMAGES = "images"  # the release's folder of photos
_NAME = re.compile(r"^(\d{3})A(\d{2})([a-zA-Z]?)\.jpe?g$", re.IGNORECASE)


def fields_of(name: str) -> tuple[float, str, str]:
    """(age, person, problem) of one FG-NET file name."""
    m = _NAME.match(name)
    if not m or not name.isascii():
        return np.nan, "", f"file name {name!r} is not {{person}}A{{age}}[letter].JPG"
    return float(m.group(2)), m.group(1), ""


def images_dir(release_dir: str) -> str:
    """The photos: images/ inside the release, or the folder given when it holds them."""
    inner = os.path.join(release_dir, IMAGES)
    return inner if os.path.isdir(inner) else release_dir


def read(release_dir: str) -> common.Source:
    folder = images_dir(release_dir)
    names = common.list_images(folder)
    fields = [fields_of(n) for n in names]
    table = common.table(
        len(names),
        full_path=np.array(names, dtype=object),
        age=np.array([f[0] for f in fields]),
        identity=np.array([f"fgnet:{f[1]}" if f[1] else f"image:{n}"
                           for f, n in zip(fields, names)], dtype=object),
        label_source="fgnet: file name",
        problem=np.array([f[2] for f in fields], dtype=object),
    )
    return common.Source("fgnet", table, folder, release_dir, common.CROPS,
                         "the person number in the file name",
                         read_release(os.path.join(release_dir, IMAGES)))  # release.json beside images/
