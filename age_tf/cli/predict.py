"""age-tf-predict: the age of every face in photos (or of face crops), from a SavedModel.

Examples:
  age-tf-predict --model=runs/demo/runs/mobilenet_v2_full group.jpg --annotate=annotated/
  age-tf-predict --model=runs/demo/runs/mobilenet_v2_full --output=csv photos/*.jpg > ages.csv
  age-tf-predict --model=RUN/export --faces=given crop1.jpg crop2.png   # already face crops
  age-tf-predict --model=RUN --thresholds=18,25 photo.jpg   # over / under / uncertain, <=5% error
"""

import sys

from age_tf import progress
from age_tf.cli import common
from age_tf.serve.serve_config import PredictConfig

COMMAND = common.Command(__name__, PredictConfig, required=("model",), args="PHOTO...")


def main(cfg, args):
    if not args:
        raise ValueError("give one or more photo paths after the flags")
    from age_tf.serve import predict  # TensorFlow: loaded for the work, not for --help

    # Each photo's lines as soon as it is done (a bar, if any, cleared first).
    _, _, code = predict.run(cfg, args, out=lambda text: _show(sys.stdout, text),
                             err=lambda text: _show(sys.stderr, text))
    sys.exit(code)


def _show(stream, text: str) -> None:
    if text:
        progress.clear()
        common.write(stream, text)


run = COMMAND.entry_point(main)
