"""Train the models a job file names on its store, single process, and save their checkpoints.

One model at a time: its targets are resolved against the store's labels,
standardised on the training split, the input normalisation is fitted on
training cutouts, :func:`~surveyproc.train.loop.fit` trains it on shard
streams, the test split scores it, and the checkpoint goes to
``<output>/checkpoints/<name>.pt``.  A checkpoint whose fingerprint (model
section, train section, store) matches is kept, so re-running a job does not
retrain what is already trained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointNotFoundError, InvalidParameterError
from ..fs import join
from ..jobs import JobSpec, ModelSection, TrainSection
from ..models import (
    Checkpoint,
    Grid,
    Normalization,
    TargetInfo,
    get_model,
    load_checkpoint,
    model_entry,
    resolve_targets,
    save_checkpoint,
)
from ..models.readouts import sfnet_readouts
from ..models.sfnet import SFNet
from ..store import SurveyStore
from .data import StoreBatches, target_statistics
from .loop import FitResult, TrainConfig, evaluate, fit, seed_everything
from .tasks import DensityTask, RegressionTask, Task

__all__ = ["TrainedModel", "TrainingPlan", "checkpoint_url", "finish_training", "plan_training",
           "train_job", "train_model"]

log = logging.getLogger(__name__)

NORMALIZATION_SAMPLE = 2048  # training cutouts used to fit the per-band noise scale


@dataclass
class TrainedModel:
    """Where a model's checkpoint is and how it scored."""

    name: str
    url: str
    model_id: str
    metrics: dict[str, Any]
    reused: bool = False


def checkpoint_url(job: JobSpec, name: str) -> str:
    return join(job.output.dir, "checkpoints", f"{name}.pt")


def _fingerprint(section: ModelSection, train: TrainSection, store: SurveyStore) -> str:
    settings = {"model": section.model_dump(), "train": train.model_dump(exclude={"threads"}),
                "store": store.url,
                "store_created": store.attrs.get("provenance", {}).get("created")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _missing_grid(section: ModelSection):
    msg = f"model {section.name}: kind {section.kind} needs a grid"
    raise InvalidParameterError(msg)


def _normalization(batches: StoreBatches) -> Normalization:
    sample, held = [], 0
    for x_raw, _, _ in batches.raw_rows(epoch=0):
        sample.append(x_raw)
        held += len(x_raw)
        if held >= NORMALIZATION_SAMPLE:
            break
    return Normalization.fit(np.concatenate(sample)[:NORMALIZATION_SAMPLE])


@dataclass
class TrainingPlan:
    """Everything both trainers (single process and Ray Train) need, fixed before training."""

    store: SurveyStore
    section: ModelSection
    train: TrainSection
    specs: list
    infos: list[TargetInfo]
    usable: int
    normalization: Normalization
    config: dict[str, Any]
    shards: list
    fingerprint: str

    def stream(self, split: str, shuffle: bool, shards=None, batch_size: int | None = None,
               seed: int | None = None) -> StoreBatches:
        t = self.train
        return StoreBatches(self.store, self.shards if shards is None else shards, split,
                            self.specs, self.normalization, t.val_fraction, t.test_fraction,
                            batch_size=batch_size or t.batch_size, shuffle=shuffle,
                            seed=t.seed if seed is None else seed)

    def task(self) -> Task:
        if model_entry(self.section.kind).task == "density":
            grid = self.section.grid or _missing_grid(self.section)
            return DensityTask(Grid(grid.low, grid.high, grid.n_bins), self.infos[0])
        return RegressionTask(self.infos)

    def fit_config(self) -> TrainConfig:
        t = self.train
        return TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                           weight_decay=t.weight_decay, flat_fraction=t.flat_fraction,
                           patience=t.patience, seed=t.seed, augment=t.augment)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.usable / self.train.batch_size)


def plan_training(store: SurveyStore, section: ModelSection, train: TrainSection
                  ) -> TrainingPlan:
    """Resolve targets, standardise them on the training split, fit the input normalisation."""
    units = store.attrs.get("label_units", {})
    specs = resolve_targets(section.targets, store.label_names, units)
    mean, std, usable = target_statistics(store, specs, train.val_fraction, train.test_fraction)
    if usable < train.batch_size:
        msg = (f"model {section.name}: only {usable} training galaxies have a known "
               f"{'/'.join(section.targets)}; need at least one batch ({train.batch_size})")
        raise InvalidParameterError(msg)
    infos = [TargetInfo(s.name, s.unit, float(m), float(d)) for s, m, d in zip(specs, mean, std,
                                                                               strict=True)]
    plan = TrainingPlan(store, section, train, specs, infos, usable, Normalization((1.0,)),
                        section.build_config(len(store.bands)), store.plan_shards(),
                        _fingerprint(section, train, store))
    plan.normalization = _normalization(plan.stream("train", False))
    return plan


def _up_to_date(section: ModelSection, url: str, storage_options: dict[str, Any] | None,
                fingerprint: str) -> TrainedModel | None:
    try:
        existing = load_checkpoint(url, storage_options)
    except CheckpointNotFoundError:
        return None
    if existing.provenance.get("fingerprint") != fingerprint:
        return None
    log.info("model %s: checkpoint %s is up to date (model %s); not retraining",
             section.name, url, existing.model_id)
    return TrainedModel(section.name, url, existing.model_id, existing.metrics, True)


def train_model(store: SurveyStore, section: ModelSection, train: TrainSection, *,
                url: str, storage_options: dict[str, Any] | None = None,
                force: bool = False) -> TrainedModel:
    """Train one model on ``store`` in this process and save its checkpoint to ``url``."""
    if not force:
        done = _up_to_date(section, url, storage_options, _fingerprint(section, train, store))
        if done is not None:
            return done
    if train.threads:
        torch.set_num_threads(train.threads)
    plan = plan_training(store, section, train)
    seed_everything(train.seed)
    model = get_model(section.kind, **plan.config)
    started = time.perf_counter()
    result = fit(model, plan.task(), plan.stream("train", True).epoch,
                 plan.stream("val", False).epoch, plan.fit_config(),
                 steps_per_epoch=plan.steps_per_epoch, desc=section.name)
    return finish_training(plan, model, result, url=url, storage_options=storage_options,
                           seconds=time.perf_counter() - started)


def finish_training(plan: TrainingPlan, model: torch.nn.Module, result: FitResult, *,
                    url: str, storage_options: dict[str, Any] | None, seconds: float,
                    extra_provenance: dict[str, Any] | None = None) -> TrainedModel:
    """Score the best model on the test split, read out an SFNet, save the checkpoint."""
    task = plan.task()
    train = plan.train
    metrics: dict[str, Any] = {"val": result.best.val_metrics, "best_epoch": result.best_epoch,
                               "epochs_run": len(result.history),
                               "train_samples_per_s": result.best.samples_per_s}
    if train.test_fraction > 0:
        _, predictions, targets, _ = evaluate(model, task, plan.stream("test", False).epoch())
        metrics["test"] = task.metrics(predictions, targets) if len(targets) else {}
    if isinstance(model, SFNet):
        metrics["readouts"] = _readouts(model, plan.infos, plan.store,
                                        plan.stream("val", False).epoch())
    checkpoint = Checkpoint(
        kind=plan.section.kind, config=plan.config, bands=list(plan.store.bands),
        image_size=[plan.store.layout.height, plan.store.layout.width],
        normalization=plan.normalization, targets=plan.infos, state_dict=result.best_state,
        metrics=metrics,
        provenance={"fingerprint": plan.fingerprint, "store": plan.store.url,
                    "name": plan.section.name, "train": train.model_dump(),
                    "training_galaxies": plan.usable, "seconds": round(seconds, 1),
                    "surveyproc_version": __version__, "torch_version": torch.__version__,
                    "python": platform.python_version(), **(extra_provenance or {})},
    )
    model_id = save_checkpoint(checkpoint, url, storage_options)
    return TrainedModel(plan.section.name, url, model_id, metrics)


@torch.inference_mode()
def _readouts(model: SFNet, infos: list[TargetInfo], store: SurveyStore, batches) -> dict:
    """Feature frequencies, equations and the AGN classifier on the validation split."""
    model.eval()
    idx, val, ids = [], [], []
    for x, _, object_id in batches:
        out = model(x)
        idx.append(out.act_idx.numpy())
        val.append(out.act_val.numpy())
        ids.append(object_id)
    object_ids = np.concatenate(ids)
    is_agn = None
    if "agn" in store.label_names:
        all_ids = store.read_column("object_id")
        order = np.argsort(all_ids)
        rows = order[np.searchsorted(all_ids[order], object_ids)]
        is_agn = store.read_column("labels/agn")[rows] > 0.5
    return sfnet_readouts(np.concatenate(idx), np.concatenate(val),
                          model.head.weight.detach().numpy(), model.head.bias.detach().numpy(),
                          infos, is_agn)


def train_job(job: JobSpec, store: SurveyStore, *, force: bool = False,
              resume: str | None = None) -> list[TrainedModel]:
    """Train every model of ``job`` on ``store`` (skipping up-to-date checkpoints): in this
    process, or on Ray Train when ``train.workers`` is set."""
    if not job.models:
        msg = f"job {job.name} names no models to train (add a 'models' section)"
        raise InvalidParameterError(msg)
    if resume is not None and (len(job.models) != 1 or not job.train.workers):
        msg = "--resume needs a job with one model and train.workers set (Ray Train)"
        raise InvalidParameterError(msg)
    if job.train.workers:
        from ..ops.ray_runtime import ray_runtime
        from .distributed import train_model_distributed

        with ray_runtime(job.ray.address, num_cpus=job.ray.num_cpus,
                         dashboard=job.ray.dashboard):
            return [train_model_distributed(job, store, section, force=force, resume=resume)
                    for section in job.models]
    return [train_model(store, section, job.train, url=checkpoint_url(job, section.name),
                        storage_options=job.output.storage_options, force=force)
            for section in job.models]
