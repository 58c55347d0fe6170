r"""age-tf-prepare: a dataset release -> checked, deduplicated train/val/test manifests.

Examples:
  age-tf-prepare --config=prepare --mat=raw/imdb.mat --out_dir=data
  age-tf-prepare --format=imdb_clean --release_dir=imdb-clean/csvs --images_dir=raw/imdb \
      --split=official --out_dir=data_clean
  age-tf-prepare --format=appa_real --release_dir=appa-real-release --split=official \
      --label=apparent --out_dir=data_appa
  age-tf-prepare --format=utkface --release_dir=UTKFace --out_dir=data_utk
  age-tf-prepare --format=agedb --release_dir=AgeDB --out_dir=data_agedb
"""

from age_tf.cli import common
from age_tf.data import prepare

COMMAND = common.Command(__name__, prepare.PrepareConfig, required=("out_dir",),
                         tensorflow=False)


def main(cfg, args):
    return prepare.summary(cfg, prepare.prepare(cfg))


run = COMMAND.entry_point(main)
