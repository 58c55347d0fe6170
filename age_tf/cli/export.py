"""age-tf-export: a finished run's SavedModel (with its model card) or a TFLite file.

Examples:
  age-tf-export --model_dir=runs/demo/runs/mobilenet_v2_head   # rewrite export/ and its card
  age-tf-export --model_dir=runs/demo/runs/mobilenet_v2_head --format=tflite --quantize=int8 \
      --out=age_int8.tflite
  age-tf-predict --model=age_int8.tflite photo.jpg
"""

from age_tf import config
from age_tf.cli import common
from age_tf.train import export

CONFIG, EXCLUDE = export.ExportConfig, ()
SPECS = config.define_flags(CONFIG, required=("model_dir",))


def main(argv):
    common.no_positional_args(argv)
    print(f"wrote {export.export_run(config.from_flags(CONFIG))}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
