"""How images are read and fed (PipelineConfig) and what age-tf-inputs draws: the input
pipeline's flags, importable without TensorFlow (so --help costs nothing)."""

from __future__ import annotations

import dataclasses
import os

from age_tf.config import field
from age_tf.data import sources


def image_size_field():
    """The network's input side in pixels: one definition for every config that has one
    (ModelConfig's is the run's; age-tf-inputs draws at that size)."""
    return field(256, low=32, help="Network input size in pixels (the study: 256).")


AUGMENTATIONS = ("none", "flip", "crop_flip")


@dataclasses.dataclass
class PipelineConfig:
    """How images are read and fed (the size they are fed at is the model's, ModelConfig)."""

    batch_size: int = field(32, low=1, help="Global batch size (divisible by the replicas).")
    # Off by default: the release's `*_crop` images already carry a margin around the face.
    crop_faces: bool = field(False, "Crop the manifest's face box (plus --face_margin) before "
                             "resizing (for full-size release images).")
    face_margin: float = field(sources.RELEASE_MARGIN, low=0,
                               help="Border around the face box, as a share of its size per side.")
    align: bool = field(False, "Crop each face by the manifest's aligned square (the unified "
                        "benchmark's alignment from eyes and mouth: --format=facebase data, "
                        "or age-tf-prepare --align) before resizing.")
    augment: str = field("flip", "Training augmentation: none; flip (mirror half the images); "
                         "crop_flip (the unified benchmark's: a random square of 80-100% of "
                         "the area, resized back, then flip).", choices=AUGMENTATIONS)
    # Cache entries are named by a hash of the manifest, the files' sizes and times and the
    # preprocessing, so a stale or foreign entry is never read.
    cache: str = field("", "'' (none), 'memory', or a folder for a disk cache of the decoded, "
                       "resized images (later epochs skip decoding).")
    deterministic: bool = field(True, "Reproducible element order (needed for exact resume); "
                                "slightly slower input.")

    def validate(self) -> None:
        """Raises ValueError naming --cache when a disk cache folder cannot be made there,
        or --align with --crop_faces (one framing or the other)."""
        if self.align and self.crop_faces:
            raise ValueError("--align and --crop_faces are two framings of the face; pass one")
        if self.cache in ("", "memory"):
            return
        parent = os.path.dirname(os.path.abspath(self.cache))
        if os.path.exists(self.cache) and not os.path.isdir(self.cache):
            raise ValueError(f"--cache={self.cache!r} is a file; give '', 'memory' or a folder")
        existing = self.cache if os.path.isdir(self.cache) else parent
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--cache={self.cache!r}: cannot write a cache folder there "
                             f"({existing} is not a writable folder); give '', 'memory' or a "
                             "writable folder")


BOX_COLUMNS = ["face_x1", "face_y1", "face_x2", "face_y2"]


@dataclasses.dataclass
class InputsConfig:
    """What `age-tf-inputs` draws (Figures 1 and 2)."""

    data_dir: str = field(None, "Output folder of age-tf-prepare.")
    out_dir: str = field(None, "Where to write figure1_faces.png and figure2_transformed.png.")
    num: int = field(16, low=1, help="Faces to show.")
    image_size: int = image_size_field()
    seed: int = field(0, "Which faces, and their flips.")
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
