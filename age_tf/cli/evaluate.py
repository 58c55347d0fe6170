"""age-tf-evaluate: a trained run on a split -> predictions, metrics with CIs, Figures 4-8.

Example:
  age-tf-evaluate --model_dir=runs/demo/runs/mobilenet_v2_full --data_dir=runs/demo/data
"""

from age_tf import config
from age_tf.cli import common
from age_tf.evaluate import evaluation

CONFIG, EXCLUDE = evaluation.EvaluateConfig, ()
SPECS = config.define_flags(CONFIG, required=("model_dir", "data_dir"))


def main(argv):
    common.no_positional_args(argv)
    m = evaluation.evaluate(config.from_flags(CONFIG))
    print(evaluation.summary(m))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
