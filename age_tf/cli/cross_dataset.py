"""age-tf-cross-dataset: runs x prepared test splits -> a "trained on / tested on" table.

Example:
  age-tf-cross-dataset --model_dirs=runs/imdb/mobilenet_v2_head,runs/utk/mobilenet_v2_head \
      --data_dirs=data_imdb,data_utk,data_appa --out=runs/cross_dataset.md
"""

from age_tf import config
from age_tf.cli import common
from age_tf.evaluate import cross_dataset

CONFIG, EXCLUDE = cross_dataset.CrossConfig, ()
SPECS = config.define_flags(CONFIG, required=("model_dirs", "data_dirs", "out"))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(CONFIG)
    cross_dataset.write(cfg)
    with open(cfg.out) as f:
        print(f.read() + f"wrote {cfg.out}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
