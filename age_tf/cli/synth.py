"""age-tf-synth: writes a synthetic dataset release (its exact layout, known defects).

Examples:
  age-tf-synth --config=synth_demo --out_dir=/tmp/age_tf/raw
  age-tf-synth --config=synth_demo --format=imdb_clean --out_dir=/tmp/age_tf/raw_clean
"""

from age_tf.cli import common
from age_tf.synthetic import synth

COMMAND = common.Command(__name__, synth.SynthConfig, required=("out_dir",),
                         tensorflow=False)


def main(cfg, args):
    return synth.summary_text(cfg, synth.generate(cfg))


run = COMMAND.entry_point(main)
