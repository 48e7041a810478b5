"""The learning-rate schedules every family shares."""

from __future__ import annotations

import math

import pytest

from wavefoundry.config import TrainingConfig
from wavefoundry.training.trainer import lr_lambda


def test_constant_with_warmup_ramps_then_holds() -> None:
    factor = lr_lambda(TrainingConfig(steps=100, warmup_steps=4))
    assert [factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_falls_from_one_to_the_floor() -> None:
    factor = lr_lambda(TrainingConfig(steps=100, lr_schedule="cosine", min_lr_ratio=0.1))
    assert factor(0) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(0.55)
    assert factor(100) == pytest.approx(0.1)
    assert all(factor(s) >= factor(s + 1) for s in range(100))


def test_exponential_decays_per_step() -> None:
    factor = lr_lambda(TrainingConfig(steps=10, lr_schedule="exponential", lr_decay=0.9))
    assert factor(10) == pytest.approx(0.9**10)
    assert math.isclose(factor(3) / factor(2), 0.9)
