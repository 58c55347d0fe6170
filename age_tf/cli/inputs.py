"""age-tf-inputs: the study's Figures 1 and 2 (training faces before/after the pipeline).

Example:
  age-tf-inputs --data_dir=runs/demo/data --out_dir=runs/demo/figures
"""

from __future__ import annotations


from absl import flags

from age_tf import pipeline
from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Output folder of age-tf-prepare.")
flags.DEFINE_string("out_dir", None, "Where to write figure1_faces.png and figure2_transformed.png.")
flags.DEFINE_integer("num", 16, "Faces to show.")
flags.DEFINE_integer("image_size", 256, "Network input size.")
flags.DEFINE_bool("crop_faces", False, "Crop the face box first (full-size release images).")
flags.DEFINE_integer("seed", 0, "Which faces, and their flips.")
flags.mark_flags_as_required(["data_dir", "out_dir"])


def main(argv):
    common.no_positional_args(argv)
    cfg = pipeline.PipelineConfig(image_size=FLAGS.image_size, crop_faces=FLAGS.crop_faces)
    for p in pipeline.write_input_figures(FLAGS.data_dir, FLAGS.out_dir, FLAGS.num, cfg, FLAGS.seed):
        print(f"wrote {p}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
