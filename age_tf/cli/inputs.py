"""age-tf-inputs: the study's Figures 1 and 2 (training faces before/after the pipeline).

Example:
  age-tf-inputs --data_dir=runs/demo/data --out_dir=runs/demo/figures
"""

from __future__ import annotations

import os

from absl import flags

from age_tf import pipeline, plots
from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Output folder of age-tf-prepare.")
flags.DEFINE_string("out_dir", None, "Where to write figure1_faces.png and figure2_transformed.png.")
flags.DEFINE_integer("num", 16, "Faces to show.")
flags.DEFINE_integer("image_size", 256, "Network input size.")
flags.DEFINE_bool("crop_faces", False, "Crop the face box first (full-size release images).")
flags.DEFINE_integer("seed", 0, "Which faces, and their flips.")
flags.mark_flags_as_required(["data_dir", "out_dir"])


def write_input_figures(data_dir: str, out_dir: str, num: int, cfg: pipeline.PipelineConfig,
                        seed: int = 0) -> list[str]:
    """Writes Figures 1 and 2 for the training split; returns their paths."""
    manifest, images_dir = pipeline.load_manifest(data_dir, "train")
    before, after, ages, flipped = pipeline.sample_faces(manifest, images_dir, cfg, num, seed)
    os.makedirs(out_dir, exist_ok=True)
    fig1 = os.path.join(out_dir, "figure1_faces.png")
    fig2 = os.path.join(out_dir, "figure2_transformed.png")
    plots.plot_face_grid(before, [f"age {a}  {b.shape[1]}x{b.shape[0]}" for a, b in zip(ages, before)],
                         fig1, "Training faces as stored")
    plots.plot_face_grid(after, [f"age {a}{'  flipped' if f else ''}" for a, f in zip(ages, flipped)],
                         fig2, f"After the pipeline: resized to {cfg.image_size}x{cfg.image_size}, "
                               "random horizontal flip (p=0.5)")
    return [fig1, fig2]


def main(argv):
    common.no_positional_args(argv)
    cfg = pipeline.PipelineConfig(image_size=FLAGS.image_size, crop_faces=FLAGS.crop_faces)
    for p in write_input_figures(FLAGS.data_dir, FLAGS.out_dir, FLAGS.num, cfg, FLAGS.seed):
        print(f"wrote {p}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
