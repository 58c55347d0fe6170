"""age-tf-synth: writes a synthetic IMDB-WIKI dataset (release format, known defects).

Example:
  age-tf-synth --out_dir=/tmp/age_tf/raw --num_images=2000 --seed=0
"""

from __future__ import annotations

from absl import flags

from age_tf.cli import common
from age_tf.data import synth

_D = synth.SynthConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Where to write imdb.mat, imdb_crop/ and ground_truth.csv.")
flags.DEFINE_integer("num_images", _D.num_images, "Rows in imdb.mat (files written: slightly fewer).")
flags.DEFINE_integer("seed", _D.seed, "Random seed; the same seed writes the same bytes.")
flags.DEFINE_float("images_per_identity", _D.images_per_identity, "Mean photos per person.")
flags.DEFINE_integer("min_size", _D.min_size, "Smallest crop side in pixels.")
flags.DEFINE_integer("max_size", _D.max_size, "Largest crop side in pixels.")
flags.DEFINE_float("duplicate_rate", _D.duplicate_rate, "Share of rows that copy another row's photo.")
flags.DEFINE_float("cross_identity_duplicate_share", _D.cross_identity_duplicate_share,
                   "Share of the duplicates filed under another person.")
for _kind in synth.DEFECT_KINDS:
    flags.DEFINE_float(f"{_kind}_rate", _D.rate(_kind), f"Share of rows of kind '{_kind}'.")
flags.DEFINE_integer("workers", None, "Rendering processes (default: all cores).")
flags.DEFINE_bool("overwrite", False, "Replace a dataset already in --out_dir.")
flags.mark_flag_as_required("out_dir")


def main(argv):
    common.no_positional_args(argv)
    cfg = synth.SynthConfig(
        num_images=FLAGS.num_images, seed=FLAGS.seed,
        images_per_identity=FLAGS.images_per_identity,
        min_size=FLAGS.min_size, max_size=FLAGS.max_size,
        duplicate_rate=FLAGS.duplicate_rate,
        cross_identity_duplicate_share=FLAGS.cross_identity_duplicate_share,
        workers=FLAGS.workers,
        **{f"{k}_rate": FLAGS[f"{k}_rate"].value for k in synth.DEFECT_KINDS},
    )
    synth.generate(cfg, FLAGS.out_dir, overwrite=FLAGS.overwrite)


def run():
    common.run(main)


if __name__ == "__main__":
    run()
