"""Train one model in this process (no Ray): the laptop path and the test path."""

from __future__ import annotations

import time
from typing import Any

import torch

from ..jobs import TrainSection
from ..kinds import ModelSettings
from ..store import SurveyStore
from .loop import Distribution, fit, seed_everything
from .plan import TrainedModel, fingerprint, finish_training, plan_training, up_to_date

__all__ = ["train_model"]


def train_model(store: SurveyStore, section: ModelSettings, train: TrainSection, *,
                url: str, storage_options: dict[str, Any] | None = None,
                force: bool = False, plugins: list[str] | None = None) -> TrainedModel:
    """Train one model on ``store`` in this process and save its checkpoint to ``url``
    (or keep the checkpoint there if it is up to date and ``force`` is false)."""
    if not force:
        done = up_to_date(section, url, storage_options, fingerprint(section, train, store))
        if done is not None:
            return done
    if train.threads:
        torch.set_num_threads(train.threads)
    plan = plan_training(store, section, train, plugins)
    seed_everything(train.seed)
    model = plan.build()
    streams = plan.train_streams()
    started = time.perf_counter()
    result = fit(model, plan.task(), streams.batches, plan.stream("val", False).epoch,
                 plan.fit_config(), steps_per_epoch=streams.steps, desc=section.name,
                 distribution=Distribution(accumulate=streams.accumulate))
    return finish_training(plan, model, result, url=url, storage_options=storage_options,
                           seconds=time.perf_counter() - started)
