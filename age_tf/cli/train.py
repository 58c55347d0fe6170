"""age-tf-train: fine-tune a backbone for age regression (any tf.distribute strategy).

Example:
  age-tf-train --config=demo --data_dir=runs/demo/data --model_dir=runs/demo/one_run
Run the same command again after a crash: it resumes from the last completed epoch.
"""


from age_tf import config
from age_tf.cli import common
from age_tf.train import distribution, train_config, training

CONFIG, EXCLUDE = train_config.TrainConfig, ()
SPECS = config.define_flags(CONFIG, required=("data_dir", "model_dir"))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(train_config.TrainConfig, flags_text=config.flags_text(SPECS))
    cfg.validate()  # every flag checked before TensorFlow starts any work
    distribution.split_cpu(cfg.num_cpu_devices)
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TF work.
    result = training.train_and_evaluate(cfg, distribution.get_strategy(cfg.strategy))
    print(training.summary(result, cfg.model_dir))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
