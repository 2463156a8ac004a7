"""The loop's schedule, early stopping and best-state restoration, on a tiny problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from surveyproc.models import TargetInfo
from surveyproc.models.sfnet import RegressionOutput
from surveyproc.train import RegressionTask, TrainConfig, fit
from surveyproc.train.loop import flat_then_cosine


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def forward(self, x):
        features = x.flatten(1)
        return RegressionOutput(self.layer(features), features)


def _data(seed: int, n: int = 256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = (x.flatten(1) @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])) + 3.0
    return [(x[i:i + 32], y[i:i + 32], np.arange(i, i + 32)) for i in range(0, n, 32)]


def test_flat_then_cosine_schedule():
    factor = flat_then_cosine(100, 0.7)
    assert factor(0) == factor(69) == 1.0
    assert factor(85) == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert factor(100) == pytest.approx(0.0, abs=1e-12)


def test_fit_learns_and_keeps_the_best_state():
    torch.manual_seed(0)
    model = Linear()
    task = RegressionTask([TargetInfo("y", "", 3.0, 2.3)])
    train, val = _data(0), _data(1)
    result = fit(model, task, lambda epoch: train, lambda: val,
                 TrainConfig(epochs=30, lr=0.05, augment=False, patience=30), steps_per_epoch=8)
    losses = [e.val_loss for e in result.history]
    assert losses[-1] < 0.01 * losses[0]
    assert result.best.val_metrics["rmse_y"] < 0.1
    assert torch.equal(model.layer.weight, result.best_state["layer.weight"])


def test_early_stopping_when_validation_stops_improving():
    torch.manual_seed(0)
    model = Linear()
    task = RegressionTask([TargetInfo("y", "", 3.0, 2.3)])
    noise = [(x, torch.randn_like(y) * 10, i) for x, y, i in _data(1)]  # nothing to learn
    result = fit(model, task, lambda epoch: _data(0), lambda: noise,
                 TrainConfig(epochs=50, lr=0.05, augment=False, patience=2), steps_per_epoch=8)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 3
