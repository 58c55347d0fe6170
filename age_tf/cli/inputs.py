"""age-tf-inputs: Figures 1 and 2, training faces before and after the input pipeline.

Example:
  age-tf-inputs --data_dir=runs/demo/data --out_dir=runs/demo/figures --image_size=64
"""

from age_tf.cli import common
from age_tf.data.pipeline_config import InputsConfig

COMMAND = common.Command(__name__, InputsConfig, required=("data_dir", "out_dir"))


def main(cfg, args):
    from age_tf.data import input_figures  # TensorFlow: for the work, not for --help

    paths = input_figures.write_input_figures(cfg.data_dir, cfg.out_dir, cfg.num, cfg.pipeline,
                                              cfg.image_size, cfg.seed)
    return "\n".join(f"wrote {p}" for p in paths)


run = COMMAND.entry_point(main)
