r"""age-tf-export: a finished run's SavedModel (with its model card) or a TFLite file.

Examples:
  age-tf-export --model_dir=runs/demo/runs/mobilenet_v2_head   # rewrite export/ and its card
  age-tf-export --model_dir=runs/demo/runs/mobilenet_v2_head --format=tflite --quantize=int8 \
      --out=age_int8.tflite
  age-tf-predict --model=age_int8.tflite photo.jpg
"""

from age_tf.cli import common
from age_tf.train.train_config import ExportConfig

COMMAND = common.Command(__name__, ExportConfig, required=("model_dir",))


def main(cfg, args):
    from age_tf.train import export  # TensorFlow: loaded for the work, not for --help

    return f"wrote {export.export_run(cfg)}"


run = COMMAND.entry_point(main)
