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
from .loop import TrainConfig, evaluate, fit, seed_everything
from .tasks import DensityTask, RegressionTask, Task

__all__ = ["TrainedModel", "checkpoint_url", "train_job", "train_model"]

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


def train_model(store: SurveyStore, section: ModelSection, train: TrainSection, *,
                url: str, storage_options: dict[str, Any] | None = None,
                force: bool = False) -> TrainedModel:
    """Train one model on ``store`` and save its checkpoint to ``url``."""
    fingerprint = _fingerprint(section, train, store)
    if not force:
        try:
            existing = load_checkpoint(url, storage_options)
        except CheckpointNotFoundError:
            existing = None
        if existing is not None and existing.provenance.get("fingerprint") == fingerprint:
            log.info("model %s: checkpoint %s is up to date (model %s); not retraining",
                     section.name, url, existing.model_id)
            return TrainedModel(section.name, url, existing.model_id, existing.metrics, True)
    if train.threads:
        torch.set_num_threads(train.threads)
    units = store.attrs.get("label_units", {})
    specs = resolve_targets(section.targets, store.label_names, units)
    mean, std, usable = target_statistics(store, specs, train.val_fraction, train.test_fraction)
    if usable < train.batch_size:
        msg = (f"model {section.name}: only {usable} training galaxies have a known "
               f"{'/'.join(section.targets)}; need at least one batch ({train.batch_size})")
        raise InvalidParameterError(msg)
    infos = [TargetInfo(s.name, s.unit, float(m), float(d)) for s, m, d in zip(specs, mean, std,
                                                                               strict=True)]
    shards = store.plan_shards()

    def stream(split: str, shuffle: bool, normalization: Normalization) -> StoreBatches:
        return StoreBatches(store, shards, split, specs, normalization, train.val_fraction,
                            train.test_fraction, batch_size=train.batch_size, shuffle=shuffle,
                            seed=train.seed)

    normalization = _normalization(stream("train", False, Normalization((1.0,))))
    config = section.build_config(len(store.bands))
    seed_everything(train.seed)
    model = get_model(section.kind, **config)
    task: Task
    if model_entry(section.kind).task == "density":
        grid = section.grid or _missing_grid(section)
        task = DensityTask(Grid(grid.low, grid.high, grid.n_bins), infos[0])
    else:
        task = RegressionTask(infos)
    train_stream = stream("train", True, normalization)
    val_stream = stream("val", False, normalization)
    started = time.perf_counter()
    result = fit(model, task, train_stream.epoch, val_stream.epoch,
                 TrainConfig(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr,
                             weight_decay=train.weight_decay,
                             flat_fraction=train.flat_fraction, patience=train.patience,
                             seed=train.seed, augment=train.augment),
                 steps_per_epoch=math.ceil(usable / train.batch_size), desc=section.name)
    metrics: dict[str, Any] = {"val": result.best.val_metrics, "best_epoch": result.best_epoch,
                               "epochs_run": len(result.history),
                               "train_samples_per_s": result.best.samples_per_s}
    if train.test_fraction > 0:
        _, predictions, targets, _ = evaluate(model, task, stream("test", False,
                                                                  normalization).epoch())
        metrics["test"] = task.metrics(predictions, targets) if len(targets) else {}
    if isinstance(model, SFNet):
        metrics["readouts"] = _readouts(model, infos, store,
                                        stream("val", False, normalization).epoch())
    checkpoint = Checkpoint(
        kind=section.kind, config=config, bands=list(store.bands),
        image_size=[store.layout.height, store.layout.width], normalization=normalization,
        targets=infos, state_dict=result.best_state, metrics=metrics,
        provenance={"fingerprint": fingerprint, "store": store.url, "name": section.name,
                    "train": train.model_dump(), "training_galaxies": usable,
                    "seconds": round(time.perf_counter() - started, 1),
                    "surveyproc_version": __version__, "torch_version": torch.__version__,
                    "python": platform.python_version()},
    )
    model_id = save_checkpoint(checkpoint, url, storage_options)
    return TrainedModel(section.name, url, model_id, metrics)


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


def train_job(job: JobSpec, store: SurveyStore, *, force: bool = False) -> list[TrainedModel]:
    """Train every model of ``job`` on ``store`` (skipping up-to-date checkpoints)."""
    if not job.models:
        msg = f"job {job.name} names no models to train (add a 'models' section)"
        raise InvalidParameterError(msg)
    return [train_model(store, section, job.train, url=checkpoint_url(job, section.name),
                        storage_options=job.output.storage_options, force=force)
            for section in job.models]
