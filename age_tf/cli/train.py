"""age-tf-train: fine-tune a backbone for age regression (any tf.distribute strategy).

Example:
  age-tf-train --flagfile=configs/demo.cfg --data_dir=runs/demo/data --model_dir=runs/demo/mobilenet_v2_head
Run the same command again after a crash: it resumes from the last completed epoch.
"""

from __future__ import annotations

from absl import flags

from age_tf import distribution, training
from age_tf.cli import common, train_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Output folder of age-tf-prepare (train.csv, val.csv).")
flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, logs, export (resumed if present).")
flags.mark_flags_as_required(["data_dir", "model_dir"])


def main(argv):
    common.no_positional_args(argv)
    cfg = train_flags.config_from_flags(FLAGS.data_dir, FLAGS.model_dir)
    cfg.validate()  # every flag checked before TensorFlow starts any work
    distribution.split_cpu(FLAGS.num_cpu_devices)
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TF work.
    strategy = distribution.get_strategy(cfg.strategy)
    result = training.train_and_evaluate(cfg, strategy)
    if "val" in result:
        v = result["val"]
        print(f"best epoch {result['best_epoch']}/{result['epochs_completed']}: "
              f"val MAE {v['mae_years']:.2f} years, PLCC {v['plcc']:.4f}, SROCC {v['srocc']:.4f}\n"
              f"run directory: {cfg.model_dir}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
