"""age-tf-prepare: a dataset release -> checked, deduplicated train/val/test manifests.

Examples:
  age-tf-prepare --config=prepare --mat=raw/imdb.mat --out_dir=data
  age-tf-prepare --format=imdb_clean --release_dir=imdb-clean/csvs --images_dir=raw/imdb \
      --split=official --out_dir=data_clean
  age-tf-prepare --format=appa_real --release_dir=appa-real-release --split=official \
      --label=apparent --out_dir=data_appa
  age-tf-prepare --format=utkface --release_dir=UTKFace --out_dir=data_utk
  age-tf-prepare --format=agedb --release_dir=AgeDB --out_dir=data_agedb
"""

from age_tf import config
from age_tf.cli import common
from age_tf.data import prepare

CONFIG, EXCLUDE = prepare.PrepareConfig, ()
SPECS = config.define_flags(CONFIG, required=("out_dir",))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(prepare.PrepareConfig)
    report = prepare.prepare(cfg)
    print(prepare.summary(cfg, report))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
