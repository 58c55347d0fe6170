"""Flags shared by age-tf-train and age-tf-experiment: model, input, optimization, distribution."""

from __future__ import annotations

from absl import flags

from age_tf import distribution, models, pipeline, training

FLAGS = flags.FLAGS
_T = training.TrainConfig(data_dir="", model_dir="")
_M = models.ModelConfig()
_P = pipeline.PipelineConfig()

# Model.
flags.DEFINE_enum("backbone", _M.backbone, sorted(models.BACKBONES), "Registered backbone.")
flags.DEFINE_integer("image_size", _M.image_size, "Network input size (the study: 256).")
flags.DEFINE_string("weights", _M.weights, "'imagenet', 'none' or a path to a weights file.")
flags.DEFINE_enum("tune", _M.tune, list(models.TUNE_MODES), "head: backbone frozen; full: all trainable.")
flags.DEFINE_list("head_units", [str(u) for u in _M.head_units], "Hidden units of the GELU head.")
flags.DEFINE_float("dropout", _M.dropout, "Dropout after each hidden head layer.")
flags.DEFINE_bool("sync_batchnorm", True,
                  "All-reduce BatchNorm batch statistics across replicas in 'full' mode.")
flags.DEFINE_float("bn_momentum", None, "Backbone BatchNorm momentum (default: Keras'; ~0.9 from scratch).")
# Input.
flags.DEFINE_integer("batch_size", _P.batch_size, "Global batch size (divisible by replicas).")
flags.DEFINE_bool("crop_faces", _P.crop_faces, "Crop the face box (full-size release images).")
flags.DEFINE_float("face_margin", _P.face_margin, "Margin around the face box, per side.")
flags.DEFINE_string("cache", _P.cache, "'' (none), 'memory', or a folder for a disk cache.")
flags.DEFINE_bool("deterministic", True,
                  "Reproducible data order (needed for exact resume); slightly slower input.")
# Optimization.
flags.DEFINE_integer("epochs", _T.epochs, "Epochs to train in all (a resumed run continues).")
flags.DEFINE_float("learning_rate", _T.learning_rate, "Peak Adam learning rate.")
flags.DEFINE_enum("lr_schedule", _T.lr_schedule, list(training.LR_SCHEDULES), "Decay.")
flags.DEFINE_float("lr_decay_rate", _T.lr_decay_rate, "Per-epoch factor for 'exponential'.")
flags.DEFINE_float("min_lr_ratio", _T.min_lr_ratio, "Cosine floor as a share of the peak.")
flags.DEFINE_float("warmup_epochs", _T.warmup_epochs, "Linear warmup length (epochs).")
flags.DEFINE_enum("monitor", _T.monitor, sorted(training.MONITORS), "Best-model/early-stop metric.")
flags.DEFINE_integer("early_stopping_patience", _T.early_stopping_patience, "0: no early stopping.")
flags.DEFINE_float("early_stopping_min_delta", _T.early_stopping_min_delta,
                   "A change of the monitor smaller than this is no improvement (early stopping).")
flags.DEFINE_integer("steps_per_epoch", _T.steps_per_epoch, "Cap on steps per epoch (0: all).")
flags.DEFINE_enum("precision", _T.precision, list(training.PRECISIONS), "Keras dtype policy.")
flags.DEFINE_bool("jit_compile", _T.jit_compile, "XLA for the gradient step (GPUs; ~8x slower on CPU).")
# Distribution.
flags.DEFINE_enum("strategy", _T.strategy, list(distribution.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many logical devices (testing).")
flags.DEFINE_integer("log_every", _T.log_every, "Log the running loss every N steps (0: never).")
flags.DEFINE_bool("feature_cache", _T.feature_cache,
                  "Head mode: compute backbone features once (both flips), train the head on them.")
flags.DEFINE_bool("export", _T.export, "Write the SavedModel and model.keras at the end.")
flags.DEFINE_integer("seed", _T.seed, "Seeds weights, data order and flips.")


def config_from_flags(data_dir: str, model_dir: str) -> training.TrainConfig:
    """The TrainConfig the flags describe (flags are read here, never in the library)."""
    try:
        head_units = tuple(int(u) for u in FLAGS.head_units)
    except ValueError as e:
        raise ValueError(f"--head_units takes integers, got {FLAGS.head_units}") from e
    return training.TrainConfig(
        data_dir=data_dir, model_dir=model_dir,
        model=models.ModelConfig(backbone=FLAGS.backbone, image_size=FLAGS.image_size,
                                 weights=FLAGS.weights, tune=FLAGS.tune, head_units=head_units,
                                 dropout=FLAGS.dropout, bn_momentum=FLAGS.bn_momentum,
                                 sync_batchnorm=FLAGS.sync_batchnorm),
        pipeline=pipeline.PipelineConfig(image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
                                         crop_faces=FLAGS.crop_faces, face_margin=FLAGS.face_margin,
                                         cache=FLAGS.cache,
                                         deterministic=FLAGS.deterministic, seed=FLAGS.seed),
        epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, lr_schedule=FLAGS.lr_schedule,
        lr_decay_rate=FLAGS.lr_decay_rate, min_lr_ratio=FLAGS.min_lr_ratio,
        warmup_epochs=FLAGS.warmup_epochs, monitor=FLAGS.monitor,
        early_stopping_patience=FLAGS.early_stopping_patience,
        early_stopping_min_delta=FLAGS.early_stopping_min_delta,
        steps_per_epoch=FLAGS.steps_per_epoch, precision=FLAGS.precision,
        jit_compile=FLAGS.jit_compile, strategy=FLAGS.strategy, log_every=FLAGS.log_every,
        export=FLAGS.export, feature_cache=FLAGS.feature_cache, seed=FLAGS.seed, flags_text=FLAGS.flags_into_string(),
    )


