"""age-tf-inputs: Figures 1 and 2, training faces before and after the input pipeline.

Example:
  age-tf-inputs --data_dir=runs/demo/data --out_dir=runs/demo/figures --image_size=64
"""

from age_tf import config
from age_tf.cli import common
from age_tf.data import input_figures, pipeline

CONFIG, EXCLUDE = input_figures.InputsConfig, ()
SPECS = config.define_flags(CONFIG, required=("data_dir", "out_dir"))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(CONFIG)
    pcfg = pipeline.PipelineConfig(crop_faces=cfg.crop_faces, face_margin=cfg.face_margin)
    for p in input_figures.write_input_figures(cfg.data_dir, cfg.out_dir, cfg.num, pcfg,
                                               cfg.image_size, cfg.seed):
        print(f"wrote {p}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
