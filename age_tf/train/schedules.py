"""Learning-rate schedules: cosine or exponential decay, optional linear warmup.

Each is a function of the optimizer's step counter only, so restoring the optimizer from a
checkpoint restores the schedule's position too.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from age_tf.train.train_config import LR_SCHEDULES  # noqa: F401  (the flag's choices)


def make_schedule(cfg, steps_per_epoch: int):
    """The learning rate of a TrainConfig's run as a function of the step counter."""
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate if not warmup else cfg.learning_rate * 0.01,
            decay_steps=max(total - warmup, 1), alpha=cfg.min_lr_ratio,
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
    if cfg.lr_schedule == "exponential":
        return WarmupExponential(cfg.learning_rate, steps_per_epoch, cfg.lr_decay_rate, warmup)
    return cfg.learning_rate


class WarmupExponential(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then learning_rate * decay_rate ** (epochs after warmup)."""

    def __init__(self, learning_rate, steps_per_epoch, decay_rate, warmup_steps):
        self.learning_rate, self.steps_per_epoch = learning_rate, steps_per_epoch
        self.decay_rate, self.warmup_steps = decay_rate, warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(self.warmup_steps)
        decayed = self.learning_rate * tf.pow(
            self.decay_rate, tf.maximum(step - warm, 0.0) / float(self.steps_per_epoch))
        if not self.warmup_steps:
            return decayed
        return tf.where(step < warm, self.learning_rate * (step + 1) / warm, decayed)

    def get_config(self):
        return dict(learning_rate=self.learning_rate, steps_per_epoch=self.steps_per_epoch,
                    decay_rate=self.decay_rate, warmup_steps=self.warmup_steps)
