"""Training: the loop shared by single-process and Ray Train runs, shard streams, job runner."""

from __future__ import annotations

from .data import StoreBatches, split_of, target_statistics
from .job import train_job
from .loop import EpochResult, FitResult, TrainConfig, evaluate, fit, seed_everything
from .plan import TrainedModel, TrainingPlan, plan_training
from .single import train_model

__all__ = [
    "EpochResult",
    "FitResult",
    "StoreBatches",
    "TrainConfig",
    "TrainedModel",
    "TrainingPlan",
    "evaluate",
    "fit",
    "plan_training",
    "seed_everything",
    "split_of",
    "target_statistics",
    "train_job",
    "train_model",
]
