"""Learning-rate schedules: each a function of the step counter, as the flags describe."""

import dataclasses

import numpy as np
import pytest

from age_tf.train import schedules


@dataclasses.dataclass
class _Cfg:
    learning_rate: float = 1e-3
    epochs: int = 4
    warmup_epochs: float = 0.0
    lr_schedule: str = "cosine"
    lr_decay_rate: float = 0.5
    min_lr_ratio: float = 0.1


def _rates(cfg, steps_per_epoch=10):
    schedule = schedules.make_schedule(cfg, steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if not callable(schedule):
        return np.full(total + 1, schedule)
    return np.array([float(schedule(step)) for step in range(total + 1)])


def test_cosine_falls_from_the_peak_to_its_floor():
    rates = _rates(_Cfg())
    assert rates[0] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-4, rel=1e-4)  # --min_lr_ratio x the peak
    assert (np.diff(rates) <= 1e-12).all()


def test_cosine_warms_up_linearly_then_decays():
    rates = _rates(_Cfg(warmup_epochs=1))
    assert rates[0] == pytest.approx(1e-5)  # 1% of the peak at the first step
    assert rates[10] == pytest.approx(1e-3, rel=1e-3)  # the peak after one epoch
    assert (np.diff(rates[:11]) > 0).all() and (np.diff(rates[10:]) <= 1e-12).all()


def test_exponential_multiplies_by_the_rate_each_epoch_after_warmup():
    rates = _rates(_Cfg(lr_schedule="exponential"))
    np.testing.assert_allclose(rates[[0, 10, 20, 30]], [1e-3, 5e-4, 2.5e-4, 1.25e-4], rtol=1e-5)
    warm = _rates(_Cfg(lr_schedule="exponential", warmup_epochs=1))
    np.testing.assert_allclose(warm[:3], [1e-4, 2e-4, 3e-4], rtol=1e-5)  # (step + 1) / warmup
    np.testing.assert_allclose(warm[[10, 20]], [1e-3, 5e-4], rtol=1e-5)


def test_constant_is_the_learning_rate_itself():
    assert schedules.make_schedule(_Cfg(lr_schedule="constant"), 10) == 1e-3


def test_the_exponential_schedule_survives_a_config_round_trip():
    s = schedules.WarmupExponential(1e-3, 10, 0.5, 5)
    again = schedules.WarmupExponential(**s.get_config())
    assert [float(again(k)) for k in (0, 7, 25)] == [float(s(k)) for k in (0, 7, 25)]
