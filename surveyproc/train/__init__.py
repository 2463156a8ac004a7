"""Training: the loop shared by single-process and Ray Train runs, shard streams, job runner."""

from __future__ import annotations

from .data import StoreBatches, split_of, target_statistics
from .job import TrainedModel, checkpoint_url, train_job, train_model
from .loop import EpochResult, FitResult, TrainConfig, evaluate, fit, seed_everything
from .tasks import DensityTask, RegressionTask

__all__ = [
    "DensityTask",
    "EpochResult",
    "FitResult",
    "RegressionTask",
    "StoreBatches",
    "TrainConfig",
    "TrainedModel",
    "checkpoint_url",
    "evaluate",
    "fit",
    "seed_everything",
    "split_of",
    "target_statistics",
    "train_job",
    "train_model",
]
