r"""age-tf-cross-dataset: runs x prepared test splits -> a "trained on / tested on" table.

Example:
  age-tf-cross-dataset --model_dirs=runs/imdb/mobilenet_v2_head,runs/utk/mobilenet_v2_head \
      --data_dirs=data_imdb,data_utk,data_appa --out=runs/cross_dataset.md
"""

from age_tf.cli import common
from age_tf.evaluate.evaluate_config import CrossConfig

COMMAND = common.Command(__name__, CrossConfig,
                         required=("model_dirs", "data_dirs", "out"))


def main(cfg, args):
    from age_tf.evaluate import cross_dataset  # TensorFlow: for the work, not for --help

    cross_dataset.write(cfg)
    with open(cfg.out) as f:
        return f.read() + f"wrote {cfg.out}"


run = COMMAND.entry_point(main)
