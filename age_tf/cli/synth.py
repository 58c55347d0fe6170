"""age-tf-synth: writes a synthetic dataset release (its exact layout, known defects).

Examples:
  age-tf-synth --config=synth_demo --out_dir=/tmp/age_tf/raw
  age-tf-synth --config=synth_demo --format=imdb_clean --out_dir=/tmp/age_tf/raw_clean
"""

from age_tf import config
from age_tf.cli import common
from age_tf.synthetic import synth

CONFIG, EXCLUDE = synth.SynthConfig, ()
SPECS = config.define_flags(CONFIG, required=("out_dir",))


def main(argv):
    common.no_positional_args(argv)
    synth.generate(config.from_flags(synth.SynthConfig))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
