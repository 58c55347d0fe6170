"""age-tf-prepare: IMDB-WIKI metadata + face crops -> train/val/test manifests.

Example:
  age-tf-prepare --flagfile=configs/prepare.cfg --mat=raw/imdb.mat --out_dir=data
"""

from __future__ import annotations

import os

from absl import flags

from age_tf.cli import common
from age_tf.data import prepare, split

_D = prepare.PrepareConfig(mat="", images_dir="", out_dir="")
FLAGS = flags.FLAGS
flags.DEFINE_string("mat", None, "imdb.mat or wiki.mat from the IMDB-WIKI release.")
flags.DEFINE_string("images_dir", None,
                    "Folder holding the NN/*.jpg crops (default: imdb_crop/ or wiki_crop/ "
                    "beside --mat, whichever exists).")
flags.DEFINE_string("out_dir", None, "Where to write the manifests, report and figure.")
flags.DEFINE_float("min_face_score", _D.min_face_score, "Keep faces with face_score >= this.")
flags.DEFINE_integer("min_age", _D.min_age, "Youngest age kept (years).")
flags.DEFINE_integer("max_age", _D.max_age, "Oldest age kept (years).")
flags.DEFINE_integer("min_size", _D.min_size, "Smallest image side kept (pixels).")
flags.DEFINE_bool("check_images", _D.check_images,
                  "Open every image; --nocheck_images filters the metadata alone (no dedup).")
flags.DEFINE_bool("dedup", _D.dedup, "Remove exact and near-duplicate images.")
flags.DEFINE_integer("dup_max_distance", _D.dup_max_distance,
                     "dHash bits two near duplicates may differ in (0 = exact duplicates only).")
flags.DEFINE_float("dup_min_correlation", _D.dup_min_correlation,
                   "Thumbnail correlation two near duplicates must reach.")
flags.DEFINE_float("sample_fraction", _D.sample_fraction,
                   "Share of the filtered images kept (the study kept half).")
flags.DEFINE_string("split", ",".join(str(x) for x in _D.split), "train,val,test fractions.")
flags.DEFINE_bool("identity_disjoint", _D.identity_disjoint,
                  "Keep each person in one subset only.")
flags.DEFINE_integer("seed", _D.seed, "Seed of the sample and the split.")
flags.DEFINE_integer("workers", None, "Image-check processes (default: all cores).")
flags.DEFINE_bool("overwrite", False, "Replace outputs already in --out_dir.")
flags.mark_flags_as_required(["mat", "out_dir"])


def default_images_dir(mat: str) -> str:
    """imdb_crop/ or wiki_crop/ beside the .mat file, as the release unpacks."""
    base = os.path.dirname(os.path.abspath(mat))
    for name in ("imdb_crop", "wiki_crop"):
        if os.path.isdir(os.path.join(base, name)):
            return os.path.join(base, name)
    return os.path.join(base, "imdb_crop")


def main(argv):
    common.no_positional_args(argv)
    cfg = prepare.PrepareConfig(
        mat=FLAGS.mat,
        images_dir=FLAGS.images_dir or default_images_dir(FLAGS.mat),
        out_dir=FLAGS.out_dir,
        min_face_score=FLAGS.min_face_score, min_age=FLAGS.min_age, max_age=FLAGS.max_age,
        min_size=FLAGS.min_size, check_images=FLAGS.check_images, dedup=FLAGS.dedup,
        dup_max_distance=FLAGS.dup_max_distance, dup_min_correlation=FLAGS.dup_min_correlation,
        sample_fraction=FLAGS.sample_fraction, split=split.parse_fractions(FLAGS.split),
        identity_disjoint=FLAGS.identity_disjoint, seed=FLAGS.seed, workers=FLAGS.workers,
        overwrite=FLAGS.overwrite,
    )
    report = prepare.prepare(cfg)
    stages = "\n".join(f"  {s['stage']:<28} {s['kept']:>9,}" for s in report["stages"])
    splits = ", ".join(f"{k} {v['images']:,}" for k, v in report["splits"].items())
    print(f"{cfg.mat}\n{stages}\nsplits: {splits}\nwrote {os.path.abspath(cfg.out_dir)}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
