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

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..kinds.base import Task
from ..ops.progress import progress_bar
from .augment import dihedral, dihedral_pair

__all__ = ["Distribution", "EpochResult", "FitResult", "TrainConfig", "TrainingState", "evaluate",
           "fit", "interleaved", "seed_everything", "weights_digest"]

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
    weights: str = ""  # digest of the weights at the end of the epoch (as checkpointed)


@dataclass
class FitResult:
    """The best model state and the history that led to it.

    ``starts`` has one record per (re)start of :func:`fit` on this run: the epoch
    it began with, where its weights came from (``fresh``, ``resume``, ``restart``),
    their digest, and what every data-parallel rank held after the first optimiser
    step (``ranks``: parameter digest, host, PID).  A restarted or resumed run
    thereby shows which checkpoint it continued from and that no epoch ran twice.
    """

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    stopped_early: bool = False
    starts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch]


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's legacy global state (model initialisation, dropout)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """A short content digest of named tensors (key order), to compare weights across
    processes, checkpoints and restarts without moving them.

    Examples
    --------
    >>> a = {"w": torch.ones(3)}
    >>> weights_digest(a) == weights_digest({"w": torch.ones(3)})
    True
    >>> weights_digest(a) == weights_digest({"w": torch.tensor([1.0, 1.0, 1.0 + 1e-7])})
    False
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def interleaved(streams: Sequence[Callable[[int], Batches]], epoch: int, per_stream: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, Any]]:
    """Exactly ``per_stream`` batches from each stream, taken in turn (s0, s1, .., s0, ..).

    A stream that runs out starts again with another shuffle (``epoch + 1000 *
    cycle``), so every data-parallel worker takes the same number of steps.  With
    ``accumulate`` micro-batches per step, turn ``k`` feeds micro-batch ``k``.
    """
    iterators = [_cycled(stream, epoch) for stream in streams]
    for _ in range(per_stream):
        for iterator in iterators:
            yield next(iterator)


def _cycled(stream: Callable[[int], Batches], epoch: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, Any]]:
    cycle = 0
    while True:
        produced = False
        for batch in stream(epoch + 1000 * cycle):
            produced = True
            yield batch
        if not produced:
            msg = "a training stream has no training galaxies in its shards"
            raise RuntimeError(msg)
        cycle += 1


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
    truth = getattr(task, "truth", None)  # a per-object summary of large targets
    losses, weights, predictions, targets, ids = [], [], [], [], []
    for x_cpu, y_cpu, object_id in batches:
        x, y = _on_device(model, x_cpu, y_cpu)
        with _autocast(x):
            losses.append(float(task.loss(model, x, y)))
        weights.append(len(y))
        with _autocast(x):
            predictions.append(task.predict(model, x))
        targets.append(truth(y_cpu) if truth is not None else y_cpu.numpy())
        ids.append(np.asarray(object_id))
    if not weights:
        return float("nan"), np.empty((0, 0)), np.empty((0, 0)), np.empty(0)
    return (float(np.average(losses, weights=weights)), np.concatenate(predictions),
            np.concatenate(targets), np.concatenate(ids))


@dataclass
class TrainingState:
    """Where a run stands after an epoch: enough to resume it exactly there."""

    epoch: int  # the last finished epoch
    model: dict[str, torch.Tensor]  # the weights now (not the best ones)
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_loss: float
    since_best: int
    history: list[EpochResult]
    starts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Tensors and JSON-able values only (``torch.load(weights_only=True)`` reads it)."""
        return {"epoch": self.epoch, "model": self.model, "optimizer": self.optimizer,
                "scheduler": self.scheduler,
                "best_state": self.best_state, "best_epoch": self.best_epoch,
                "best_loss": self.best_loss, "since_best": self.since_best,
                "history": [e.__dict__ for e in self.history], "starts": self.starts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        return cls(int(data["epoch"]), data["model"], data["optimizer"], data["scheduler"],
                   data["best_state"],
                   int(data["best_epoch"]), float(data["best_loss"]), int(data["since_best"]),
                   [EpochResult(**e) for e in data["history"]], list(data.get("starts", [])))


@dataclass
class Distribution:
    """How a data-parallel worker takes part in :func:`fit` (defaults: one process).

    ``main`` shows progress and reports (every worker takes the same optimiser steps
    because its batches come from :func:`interleaved`, which yields an exact count);
    ``agree(val_loss, metrics)`` returns the values every worker must act on
    (the main worker's, in distributed training) so early stopping agrees.
    ``first_stream`` numbers this worker's first data stream: micro-batch ``k``
    draws its augmentation from stream ``first_stream + k``'s generator, so N
    workers and one worker accumulating N micro-batches augment alike.
    ``check_ranks(core)`` runs after the first optimiser step and returns, per
    rank, its parameter digest, host and PID (raising when the digests differ).
    """

    main: bool = True
    accumulate: int = 1
    agree: Callable[[float, dict[str, float]], tuple[float, dict[str, float]]] | None = None
    first_stream: int = 0
    check_ranks: Callable[[nn.Module], list[dict[str, Any]]] | None = None


def _on_device(model: nn.Module, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the model's device (channels_last on CUDA)."""
    device = next(model.parameters()).device
    if device.type == "cpu":
        return x, y
    x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _autocast(x: torch.Tensor):
    """bf16 autocast on CUDA; nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.device.type == "cuda")


def _unwrap(model: nn.Module) -> nn.Module:
    """The model itself when wrapped (DistributedDataParallel keeps it in ``.module``)."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, nn.Module) else model


def _augmentation(seed: int, epoch: int, stream: int) -> torch.Generator:
    """The augmentation draws of one data stream in one epoch (a resumed run repeats them)."""
    return torch.Generator().manual_seed(seed + 7919 * epoch + 104729 * stream)


def fit(
    model: nn.Module,
    task: Task,
    train_batches: Callable[[int], Batches],
    val_batches: Callable[[], Batches],
    config: TrainConfig,
    steps_per_epoch: int,
    *,
    desc: str = "train",
    on_epoch: Callable[[EpochResult, nn.Module, Callable[[], TrainingState]], None]
    | None = None,
    start: TrainingState | None = None,
    origin: str = "resume",
    distribution: Distribution | None = None,
) -> FitResult:
    """Train ``model`` in place and return the best state by validation loss.

    ``train_batches(epoch)`` yields the epoch's (x, y, ids) minibatches;
    ``val_batches()`` the validation ones.  ``on_epoch(result, model, state)``
    is called after each validation (``state()`` builds the resumable
    :class:`TrainingState`: checkpointing, metrics export).  ``start`` resumes
    after its epoch (``origin`` names where it came from in the run's ``starts``
    record); ``distribution`` says how a data-parallel worker takes part.
    """
    dist = distribution or Distribution()
    core = _unwrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    total = max(1, steps_per_epoch * config.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 flat_then_cosine(total, config.flat_fraction))
    result = FitResult(best_state=copy.deepcopy(core.state_dict()), best_epoch=0)
    best_loss, since_best, first = math.inf, 0, 0
    if start is not None:
        core.load_state_dict(start.model)
        optimizer.load_state_dict(start.optimizer)
        schedule.load_state_dict(start.scheduler)
        result = FitResult(best_state=start.best_state, best_epoch=start.best_epoch,
                           history=list(start.history), starts=list(start.starts))
        best_loss, since_best, first = start.best_loss, start.since_best, start.epoch + 1
        if since_best >= config.patience:
            first = config.epochs  # it had already stopped early
    this_start: dict[str, Any] = {"epoch": first,
                                  "origin": "fresh" if start is None else origin,
                                  "weights": weights_digest(core.state_dict())}
    result.starts.append(this_start)
    accumulate = max(1, dist.accumulate)
    for epoch in range(first, config.epochs):
        generators = [_augmentation(config.seed, epoch, dist.first_stream + k)
                      for k in range(accumulate)]
        model.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar_total = steps_per_epoch * accumulate if dist.main else 0
        with progress_bar(total=bar_total, desc=f"{desc} {epoch + 1}/{config.epochs}",
                          unit="step") as bar:
            optimizer.zero_grad(set_to_none=True)
            for step, (x, y, _) in enumerate(train_batches(epoch)):
                if config.augment and x.dim() == 4:  # cutouts; photometry has no pose
                    generator = generators[step % accumulate]
                    x, y = (dihedral_pair(x, y, generator) if y.dim() == 4  # target cutouts
                            else (dihedral(x, generator), y))
                x, y = _on_device(core, x, y)
                last_micro = (step + 1) % accumulate == 0
                sync = getattr(model, "no_sync", None)
                context = sync() if sync is not None and not last_micro else \
                    contextlib.nullcontext()
                with context:
                    with _autocast(x):
                        loss = task.loss(model, x, y)
                    (loss / accumulate).backward()
                if last_micro:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if schedule.last_epoch < total:
                        schedule.step()
                    if dist.check_ranks is not None and "ranks" not in this_start:
                        this_start["ranks"] = dist.check_ranks(core)
                value = float(loss.detach())
                seen += len(y)
                loss_sum += value * len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        seconds = time.perf_counter() - started
        val_loss, predictions, targets, _ = evaluate(core, task, val_batches())
        metrics = task.metrics(predictions, targets) if len(targets) else {}
        if dist.agree is not None:
            val_loss, metrics = dist.agree(val_loss, metrics)
        epoch_result = EpochResult(epoch, loss_sum / max(seen, 1), val_loss, metrics, seconds,
                                   seen / max(seconds, 1e-9), weights_digest(core.state_dict()))
        result.history.append(epoch_result)
        if val_loss < best_loss:
            best_loss, since_best = val_loss, 0
            result.best_state = copy.deepcopy(core.state_dict())
            result.best_epoch = epoch
        else:
            since_best += 1
        if on_epoch is not None:
            def state(epoch: int = epoch, best: float = best_loss,
                      waited: int = since_best) -> TrainingState:
                return TrainingState(epoch, copy.deepcopy(core.state_dict()),
                                     optimizer.state_dict(), schedule.state_dict(),
                                     result.best_state, result.best_epoch, best, waited,
                                     list(result.history), copy.deepcopy(result.starts))

            on_epoch(epoch_result, core, state)
        if since_best >= config.patience:
            result.stopped_early = True
            break
    core.load_state_dict(result.best_state)
    return result
