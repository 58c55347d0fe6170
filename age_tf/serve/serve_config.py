"""The serving commands' configurations (age-tf-predict, age-tf-serve): light on purpose, no
TensorFlow, so their --help and flag errors come in a second."""

from __future__ import annotations

import dataclasses

from age_tf import decisions, fileio
from age_tf.config import field
from age_tf.data import detect

# Twice Pillow's decompression-bomb limit (89.5 MP), where Pillow itself refuses: 180 MP
# decode to ~0.5 GB of RGB, and a 144 MP (12,000 px) camera panorama still reads.
MAX_MEGAPIXELS = 180.0


@dataclasses.dataclass
class PredictConfig:
    """How `age-tf-predict` runs (the photos are its positional arguments)."""

    model: str = field(None, "An export/ folder, a run directory holding one, or a .tflite "
                       "file written by age-tf-export.")
    faces: str = field("detect", "detect: find every face in each photo (MTCNN), crop it as "
                       "the model's training faces were framed, predict each; given: each "
                       "file is already a face crop.", choices=("detect", "given"))
    output: str = field("text", "Human-readable lines, CSV or JSON (JSON adds the model "
                        "card's summary).", choices=("text", "csv", "json"))
    batch_size: int = field(32, low=1, help="Faces per call of the model.")
    min_face_size: int = field(20, low=12, help="Smallest face the detector looks for (pixels; "
                            "12 is its network's window).")
    min_confidence: float = field(0.9, low=0, high=1,
                                  help="Faces the detector is less sure of are left out.")
    face_margin: float | None = field(None, low=0,
                                      help="Crop margin around a detected face, as a share of its "
                                           "size per side. Default: the margin the model's card "
                                           "says its training faces had (0.4 without a card).")
    annotate: str | None = field(None, "Folder for copies of the photos with boxes and ages "
                                 "drawn (detect mode). A copy never replaces a photo given, "
                                 "nor another copy: a name taken gets -2, -3, ...")
    max_megapixels: float = field(MAX_MEGAPIXELS, low=0, low_open=True,
                                  help="Larger photos are refused before decoding (a "
                                  "decompression bomb must not take the memory); raise it "
                                  "for a trusted photo.")
    detect_side: int = field(detect.DETECT_SIDE, low=64, help="Faces are found on a copy of "
                             "each photo at most this many pixels a side, and cropped from "
                             "the photo itself.")

    thresholds: tuple[float, ...] = field((), "Ages (years) at which to decide each face: "
                                          "over, under or uncertain, with the error rate "
                                          "--decision_error promises (calibrated on the "
                                          "validation split, from the model's card).")
    decision_error: float = field(decisions.DEFAULT_ERROR, low=0, high=0.5, low_open=True,
                                  high_open=True, help="At most this share of faces under a "
                                  "threshold is called over it, and of faces at or over it "
                                  "called under; the rest are uncertain.")
    decision_band: float | None = decisions.band_field()

    def validate(self) -> None:
        decisions.parse_thresholds(self.thresholds)
        if self.annotate:
            fileio.check_writable_dir(self.annotate, "annotate")


@dataclasses.dataclass
class ServeConfig:
    """How `age-tf-serve` serves (the flags of the command)."""

    model: str = field(None, "An export/ folder, a run directory holding one, or a .tflite "
                       "file written by age-tf-export.")
    host: str = field("127.0.0.1", "Address to listen on (127.0.0.1: this machine only; "
                      "0.0.0.0: every interface).")
    port: int = field(8501, low=0, high=65535, help="Port (TF Serving's REST port by "
                      "default; 0: any free one).")
    model_name: str = field("age", "The name in TF Serving's URLs (/v1/models/<name>).")
    max_upload_mb: float = field(20.0, low=0, low_open=True,
                                 help="Larger request bodies are refused (413) unread.")
    max_megapixels: float = field(MAX_MEGAPIXELS, low=0, low_open=True,
                                  help="Larger photos are refused from their header (400).")
    queue_size: int = field(32, low=1, help="Requests at most in the building; more get 503.")
    batch_size: int = field(32, low=1, help="Face crops at most in one model call.")
    batch_wait_ms: float = field(5.0, low=0, help="How long a model call waits for more "
                                 "concurrent crops to join it.")
    timeout: float = field(60.0, low=0, low_open=True, help="Seconds a request may take.")
