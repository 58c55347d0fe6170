"""age-tf-prepare: IMDB-WIKI metadata + face crops -> train/val/test manifests.

Example:
  age-tf-prepare --config=prepare --mat=raw/imdb.mat --out_dir=data
"""

from age_tf import config
from age_tf.cli import common
from age_tf.data import prepare

CONFIG, EXCLUDE = prepare.PrepareConfig, ()
SPECS = config.define_flags(CONFIG, required=("mat", "out_dir"))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(prepare.PrepareConfig)
    report = prepare.prepare(cfg)
    print(prepare.summary(cfg, report))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
