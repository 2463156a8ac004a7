"""The training loop: one implementation for single-process and distributed training.

:func:`fit` runs epochs of AdamW with a flat-then-cosine learning rate (flat
for ``flat_fraction`` of the steps, then cosine annealing to zero, the schedule
the SFNet paper used with Ranger), dihedral augmentation, validation after every
epoch, early stopping on the validation loss and restoration of the best
weights.  It knows nothing about where batches come from: callers pass
functions that yield them, so Ray Train workers call the same loop with their
own shard streams.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..ops.progress import progress_bar
from .augment import dihedral
from .tasks import Task

__all__ = ["EpochResult", "FitResult", "TrainConfig", "evaluate", "fit", "seed_everything"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor, Any]]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the job file's ``train`` section)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    flat_fraction: float = 0.7
    patience: int = 3
    seed: int = 0
    augment: bool = True


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_metrics: dict[str, float]
    seconds: float
    samples_per_s: float


@dataclass
class FitResult:
    """The best model state and the history that led to it."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch]


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's legacy global state (model initialisation, dropout)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def flat_then_cosine(total_steps: int, flat_fraction: float) -> Callable[[int], float]:
    """Learning-rate multiplier: 1 for the first part, then cosine down to 0."""
    flat = int(total_steps * flat_fraction)

    def factor(step: int) -> float:
        if step < flat:
            return 1.0
        progress = min(1.0, (step - flat) / max(1, total_steps - flat))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@torch.inference_mode()
def evaluate(model: nn.Module, task: Task, batches: Batches) -> tuple[float, np.ndarray,
                                                                       np.ndarray, np.ndarray]:
    """Mean loss, predictions, targets and ids over ``batches`` (model in eval mode)."""
    model.eval()
    losses, weights, predictions, targets, ids = [], [], [], [], []
    for x, y, object_id in batches:
        losses.append(float(task.loss(model, x, y)))
        weights.append(len(y))
        predictions.append(task.predict(model, x))
        targets.append(y.numpy())
        ids.append(np.asarray(object_id))
    if not weights:
        return float("nan"), np.empty((0, 0)), np.empty((0, 0)), np.empty(0)
    return (float(np.average(losses, weights=weights)), np.concatenate(predictions),
            np.concatenate(targets), np.concatenate(ids))


def fit(
    model: nn.Module,
    task: Task,
    train_batches: Callable[[int], Batches],
    val_batches: Callable[[], Batches],
    config: TrainConfig,
    steps_per_epoch: int,
    *,
    desc: str = "train",
    on_epoch: Callable[[EpochResult, nn.Module], None] | None = None,
) -> FitResult:
    """Train ``model`` in place and return the best state by validation loss.

    ``train_batches(epoch)`` yields the epoch's (x, y, ids) minibatches;
    ``val_batches()`` the validation ones.  ``on_epoch`` is called after each
    validation (checkpointing, metrics export).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    total = max(1, steps_per_epoch * config.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 flat_then_cosine(total, config.flat_fraction))
    generator = torch.Generator().manual_seed(config.seed)
    result = FitResult(best_state=copy.deepcopy(model.state_dict()), best_epoch=0)
    best_loss, since_best = math.inf, 0
    for epoch in range(config.epochs):
        model.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        with progress_bar(total=steps_per_epoch, desc=f"{desc} {epoch + 1}/{config.epochs}",
                          unit="step") as bar:
            for x, y, _ in train_batches(epoch):
                if config.augment:
                    x = dihedral(x, generator)
                loss = task.loss(model, x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule.last_epoch < total:
                    schedule.step()
                value = float(loss.detach())
                seen += len(y)
                loss_sum += value * len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        seconds = time.perf_counter() - started
        val_loss, predictions, targets, _ = evaluate(model, task, val_batches())
        metrics = task.metrics(predictions, targets) if len(targets) else {}
        epoch_result = EpochResult(epoch, loss_sum / max(seen, 1), val_loss, metrics, seconds,
                                   seen / max(seconds, 1e-9))
        result.history.append(epoch_result)
        if val_loss < best_loss:
            best_loss, since_best = val_loss, 0
            result.best_state = copy.deepcopy(model.state_dict())
            result.best_epoch = epoch
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch_result, model)
        if since_best >= config.patience:
            result.stopped_early = True
            break
    model.load_state_dict(result.best_state)
    return result
