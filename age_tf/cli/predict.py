"""age-tf-predict: the age of each photo, from an exported SavedModel.

Example:
  age-tf-predict --model=runs/demo/mobilenet_v2_full/export face1.jpg face2.png
  age-tf-predict --model=runs/demo/mobilenet_v2_full --output=csv photos/*.jpg > ages.csv
"""

import sys

from age_tf import config, predict
from age_tf.cli import common

CONFIG, EXCLUDE = predict.PredictConfig, ()
SPECS = config.define_flags(CONFIG, required=("model",))


def main(argv):
    if len(argv) < 2:
        raise ValueError("give one or more photo paths after the flags")
    cfg = config.from_flags(predict.PredictConfig)
    results = predict.predict_files(cfg.model, argv[1:], cfg.batch_size)
    out, err = predict.format_results(results, cfg.output)
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(1 if err or any(r["error"] for r in results) else 0)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
