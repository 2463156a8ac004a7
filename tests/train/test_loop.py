"""The loop's schedule, early stopping and best-state restoration, on a tiny problem."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from surveyproc.kinds.tasks import RegressionTask
from surveyproc.models import TargetInfo
from surveyproc.models.sfnet import RegressionOutput
from surveyproc.train import TrainConfig, fit
from surveyproc.train.loop import Distribution, TrainingState, flat_then_cosine


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


class _Crash(Exception):
    pass


def _run(epochs: int, start=None, accumulate: int = 1, batches=None, augment: bool = True,
         crash_after: int | None = None):
    """Train the tiny model; ``crash_after`` raises after that many epochs, like a lost worker."""
    torch.manual_seed(0)
    model = Linear()
    task = RegressionTask([TargetInfo("y", "", 3.0, 2.3)])
    data = batches or _data(0)
    states = []

    def on_epoch(result, module, state):
        states.append(state())
        if crash_after is not None and len(states) == crash_after:
            raise _Crash

    def epoch_batches(epoch):  # a different order every epoch, as the store streams do
        return data if batches else data[epoch % 2:] + data[:epoch % 2]

    try:
        result = fit(model, task, epoch_batches, lambda: _data(1),
                     TrainConfig(epochs=epochs, lr=0.05, augment=augment, patience=30),
                     steps_per_epoch=len(data) // accumulate, start=start, on_epoch=on_epoch,
                     distribution=Distribution(accumulate=accumulate))
    except _Crash:
        result = None
    return model, result, states


def test_a_resumed_run_equals_an_uninterrupted_one():
    straight, whole, _ = _run(4)
    _, crashed, states = _run(4, crash_after=2)
    assert crashed is None and len(states) == 2
    # the state after epoch 2 survives a round trip through bytes (weights_only)
    buffer = io.BytesIO()
    torch.save(states[-1].to_dict(), buffer)
    state = TrainingState.from_dict(torch.load(io.BytesIO(buffer.getvalue()),
                                               weights_only=True))
    resumed, result, _ = _run(4, start=state)
    assert [e.epoch for e in result.history] == [0, 1, 2, 3]
    assert torch.equal(straight.layer.weight, resumed.layer.weight)
    assert result.best_epoch == whole.best_epoch


def test_gradient_accumulation_equals_the_large_batch():
    data = _data(0)
    halves = [(x[i:i + 16], y[i:i + 16], ids[i:i + 16]) for x, y, ids in data for i in (0, 16)]
    full, _, _ = _run(2, batches=data, augment=False)
    accumulated, _, _ = _run(2, batches=halves, accumulate=2, augment=False)
    # two half batches accumulated make the same optimiser steps as one whole batch
    assert torch.allclose(full.layer.weight, accumulated.layer.weight, atol=1e-5)


def test_resume_from_a_file_that_is_not_a_training_state_says_so(tmp_path):
    from surveyproc.errors import CheckpointNotFoundError
    from surveyproc.train.distributed import load_state

    snapshot = tmp_path / "checkpoint_manager_snapshot.json"  # what Ray Train keeps beside them
    snapshot.write_text("{}")
    with pytest.raises(CheckpointNotFoundError, match="is not a training checkpoint"):
        load_state(str(snapshot))
    with pytest.raises(CheckpointNotFoundError, match="no training checkpoint"):
        load_state(str(tmp_path / "missing"))


def test_interleaved_streams_take_turns_and_cycle():
    from surveyproc.train.loop import interleaved

    def stream(name: str, n: int):
        return lambda epoch: [(name, epoch, i) for i in range(n)]

    got = list(interleaved([stream("a", 3), stream("b", 1)], 0, 3))
    # b runs out after one batch and starts again with another shuffle (epoch + 1000)
    assert got == [("a", 0, 0), ("b", 0, 0), ("a", 0, 1), ("b", 1000, 0), ("a", 0, 2),
                   ("b", 2000, 0)]
    with pytest.raises(RuntimeError, match="no training galaxies"):
        list(interleaved([stream("a", 0)], 0, 1))


def test_a_restart_takes_the_newest_complete_state_in_the_runs_storage(tmp_path):
    from surveyproc.train.distributed import STATE_FILE, latest_state

    assert latest_state(str(tmp_path / "run"), None) is None  # nothing written yet: fresh
    _, _, states = _run(2)
    for stamp, state in zip(("2026-01-01_00-00-01", "2026-01-01_00-00-02"), states,
                            strict=True):
        directory = tmp_path / "run" / f"checkpoint_{stamp}"
        directory.mkdir(parents=True)
        torch.save(state.to_dict(), directory / STATE_FILE)
    assert latest_state(str(tmp_path / "run"), None).epoch == 1
    cut = tmp_path / "run" / "checkpoint_2026-01-01_00-00-03"  # cut short by the failure
    cut.mkdir()
    (cut / STATE_FILE).write_bytes((tmp_path / "run" / "checkpoint_2026-01-01_00-00-02" /
                                    STATE_FILE).read_bytes()[:100])
    assert latest_state(str(tmp_path / "run"), None).epoch == 1
