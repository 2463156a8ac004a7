"""What both trainers (in-process and Ray Train) share: the plan fixed before training,
the up-to-date check, and the finishing step that scores, reads out and saves a model.

Neither :mod:`.single` nor :mod:`.distributed` imports the other or
:mod:`.job`; both build on this module.  What a model is (network, task,
closed-form step, readouts) is asked of its kind (:mod:`surveyproc.kinds`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointNotFoundError, InvalidParameterError
from ..fs import redact
from ..jobs import TrainSection
from ..kinds import ModelKind, ModelSettings, TrainingData, get_kind, load_plugins
from ..models import (
    Checkpoint,
    Normalization,
    TargetInfo,
    load_checkpoint,
    resolve_targets,
    save_checkpoint,
)
from ..models.background import measure_background
from ..models.domain import TrainingDomain
from ..models.inputs import ModelInput, PhotometryInput, input_source, model_input
from ..models.targets import TargetSpec
from ..store import Shard, SurveyStore, open_store
from ..store.translated import store_attributes, survey_layout
from .data import StoreBatches, split_of, split_targets, target_statistics
from .loop import EpochResult, FitResult, TrainConfig, evaluate, interleaved

__all__ = [
    "TrainStreams",
    "TrainedModel",
    "TrainingPlan",
    "fingerprint",
    "finish_training",
    "plan_training",
    "up_to_date",
]

log = logging.getLogger(__name__)

NORMALIZATION_SAMPLE = 2048  # training cutouts used to fit the per-band noise scale
#: Train settings that say how the work is spread, not what is learnt: left out of the
#: fingerprint, so moving a job from a laptop to a cluster does not retrain it.
PLACEMENT = frozenset({"threads", "workers", "cpus_per_worker", "max_failures", "use_gpu"})


@dataclass
class TrainedModel:
    """Where a model's checkpoint is and how it scored."""

    name: str
    url: str
    model_id: str
    metrics: dict[str, Any]
    reused: bool = False


@dataclass(frozen=True)
class TrainStreams:
    """One worker's training batches: ``batches(epoch)`` yields ``steps * accumulate``
    micro-batches, micro-batch ``k`` of each step from stream ``first_stream + k``."""

    batches: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]]
    steps: int
    first_stream: int
    accumulate: int


def fingerprint(section: ModelSettings, train: TrainSection, store: SurveyStore) -> str:
    """Hash of what changes the weights: the model's settings, the optimisation (with the
    effective global batch and learning rate) and the store; not the placement."""
    optimisation = train.model_dump(exclude=set(PLACEMENT))
    if train.scale_lr:  # batch_size is per worker and lr scales with the workers
        workers = train.workers or 1
        optimisation.update(batch_size=train.batch_size * workers, lr=train.lr * workers)
    optimisation.pop("scale_lr")
    settings = {"model": section.model_dump(), "train": optimisation, "store": store.url,
                "store_created": store.attrs.get("provenance", {}).get("created")}
    pair = get_kind(section.kind).paired_store(section)
    if pair is not None:  # a rewritten target survey retrains the translator
        # its attributes alone (a missing store is refused by plan_training, in one line)
        attrs = store_attributes(pair, store.storage_options) or {}
        settings["pair_created"] = attrs.get("provenance", {}).get("created")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def up_to_date(section: ModelSettings, url: str, storage_options: dict[str, Any] | None,
               expected: str) -> TrainedModel | None:
    """The existing checkpoint at ``url`` if its fingerprint is ``expected`` (and it records
    its training domain, which older checkpoints lack); else None."""
    try:
        existing = load_checkpoint(url, storage_options)
    except CheckpointNotFoundError:
        return None
    if existing.provenance.get("fingerprint") != expected or existing.domain is None:
        return None
    log.info("model %s: checkpoint %s is up to date (model %s); not retraining",
             section.name, url, existing.model_id)
    return TrainedModel(section.name, url, existing.model_id, existing.metrics, True)


@dataclass
class TrainingPlan:
    """Everything both trainers need, fixed before training.

    Pickled to Ray Train workers: the model settings travel as plain data and
    are validated again there after the job's plug-ins are imported, so a
    plug-in kind's settings class need not be importable before that.
    """

    store: SurveyStore
    section: ModelSettings
    train: TrainSection
    specs: list[TargetSpec]
    infos: list[TargetInfo]
    usable: int
    normalization: Normalization
    config: dict[str, Any]
    shards: list[Shard]
    fingerprint: str
    plugins: list[str] = field(default_factory=list)
    domain: dict[str, Any] | None = None  # TrainingDomain.to_dict() of the training sample
    pair: SurveyStore | None = None  # the target survey of a translator (its cutouts are y)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["section"] = self.section.model_dump()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        load_plugins(state["plugins"])
        section = state["section"]
        state["section"] = get_kind(section["kind"]).settings.model_validate(section)
        self.__dict__.update(state)

    @property
    def kind(self) -> ModelKind:
        return get_kind(self.section.kind)

    @property
    def model_input(self) -> ModelInput:
        """What the network reads (the cutouts, the photometry or both), as fitted."""
        return model_input(self.config, self.normalization)

    def build(self) -> torch.nn.Module:
        """A fresh network of the planned architecture."""
        return self.kind.build(self.config)

    def stream(self, split: str, shuffle: bool, shards: list[Shard] | None = None,
               batch_size: int | None = None, seed: int | None = None) -> StoreBatches:
        t = self.train
        return StoreBatches(self.store, self.shards if shards is None else shards, split,
                            self.specs, self.model_input, t.val_fraction, t.test_fraction,
                            batch_size=batch_size or t.batch_size, shuffle=shuffle,
                            seed=t.seed if seed is None else seed, pair=self.pair)

    def train_streams(self, rank: int = 0, world: int = 1) -> TrainStreams:
        """What worker ``rank`` of ``world`` trains on, and the steps every worker takes.

        The training data are split into ``world * accumulate`` streams, stream
        ``v`` reading shards ``v::streams`` in its own seeded order; worker ``r``
        feeds micro-batch ``k`` of every optimiser step from stream ``r *
        accumulate + k``.  A global batch is thus the same galaxies whether N
        workers take one micro-batch each or one worker accumulates N, and the
        two runs take the same optimiser steps.
        """
        t = self.train
        accumulate = t.accumulate
        streams = world * accumulate
        per_step = t.batch_size * world if t.scale_lr else t.batch_size
        micro = max(1, per_step // streams)
        if len(self.shards) < streams:
            msg = (f"model {self.section.name}: {streams} training streams (workers x "
                   f"accumulate) but the store has only {len(self.shards)} shards")
            raise InvalidParameterError(msg)
        first = rank * accumulate
        mine = [self.stream("train", True, shards=self.shards[v::streams], batch_size=micro,
                            seed=t.seed + 1009 * v) for v in range(first, first + accumulate)]
        steps = max(1, math.ceil(self.usable / (micro * streams)))

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
            return interleaved([s.epoch for s in mine], epoch, steps)

        return TrainStreams(batches, steps, first, accumulate)

    def task(self) -> Any:
        return self.kind.task(self.config, self.infos)

    def data(self) -> TrainingData:
        """The splits and labels a kind's closed-form step and readouts may read."""

        def batches(split: str) -> Iterable[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
            return self.stream(split, False).epoch()

        def targets(split: str) -> np.ndarray:
            t = self.train
            return split_targets(self.store, self.specs, t.val_fraction, t.test_fraction, split)

        return TrainingData(self.infos, batches, self._label, targets, self.config)

    def _label(self, name: str, object_ids: np.ndarray) -> np.ndarray | None:
        if name not in self.store.label_names:
            return None
        all_ids = self.store.read_column("object_id")
        order = np.argsort(all_ids)
        rows = order[np.searchsorted(all_ids[order], object_ids)]
        return self.store.read_column(f"labels/{name}")[rows]

    def fit_config(self) -> TrainConfig:
        t = self.train
        return TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                           weight_decay=t.weight_decay, flat_fraction=t.flat_fraction,
                           patience=t.patience, seed=t.seed, augment=t.augment)


def _input_sample(batches: StoreBatches) -> np.ndarray:
    """Raw training inputs (cutouts, or photometry) to fit the input normalisation and the
    training domain on."""
    sample, held = [], 0
    for x_raw, _, _ in batches.raw_rows(epoch=0):
        sample.append(x_raw)
        held += len(x_raw)
        if held >= NORMALIZATION_SAMPLE:
            break
    return np.concatenate(sample)[:NORMALIZATION_SAMPLE]


def open_pair(url: str, store: SurveyStore) -> SurveyStore:
    """A translator's target survey, opened with the source store's storage options (its
    ids are not checked for duplicates here: :func:`_pair_layout` requires them equal to
    the source's, which were)."""
    try:
        return open_store(url, store.storage_options, check_ids=False)
    except FileNotFoundError:
        msg = f"no store at {redact(url)} (the translator's target_store)"
        raise InvalidParameterError(msg) from None


def _pair_layout(pair: SurveyStore, store: SurveyStore, section: ModelSettings,
                 train: TrainSection) -> tuple[dict[str, Any], int]:
    """The target survey's layout for the checkpoint (with its per-band sky noise under
    ``noise``: as its calibration states it, else the median over a sample of the noise
    in each cutout's sky ring) and the number of training objects, after checking that the two
    stores list the same objects in the same order."""
    ids = store.read_column("object_id")
    if pair.n_objects != store.n_objects or not np.array_equal(
            ids, pair.read_column("object_id")):
        msg = (f"model {section.name}: target store {redact(pair.url)} does not list the same "
               f"objects in the same order as {redact(store.url)} ({pair.n_objects:,} vs "
               f"{store.n_objects:,} objects); cross-match the two surveys first")
        raise InvalidParameterError(msg)
    if not pair.layout.has_images:
        msg = f"model {section.name}: target store {redact(pair.url)} has no cutouts"
        raise InvalidParameterError(msg)
    sample = pair.read(0, min(pair.n_objects, NORMALIZATION_SAMPLE), labels=False,
                       photometry=False).images
    assert sample is not None
    usable = int((split_of(ids, train.val_fraction, train.test_fraction) == 0).sum())
    stated = (pair.attrs.get("calibration") or {}).get("noise") or {}
    if all(band in stated for band in pair.bands):
        noise = np.array([float(stated[band]) for band in pair.bands])
    else:  # a store that does not state it: measured in the sky ring of a sample
        noise = np.nanmedian(measure_background(sample).noise, axis=0)
        noise = np.where(np.isfinite(noise) & (noise > 0), noise,
                         Normalization.fit(sample).scale)
    return {**survey_layout(pair), "noise": [float(v) for v in noise]}, usable


def plan_training(store: SurveyStore, section: ModelSettings, train: TrainSection,
                  plugins: list[str] | None = None) -> TrainingPlan:
    """Resolve targets, standardise them on the training split, fit the input normalisation
    (for a translator: open and check the target survey instead of the targets)."""
    kind = get_kind(section.kind)
    pair_url = kind.paired_store(section)
    pair = open_pair(pair_url, store) if pair_url is not None else None
    units = store.attrs.get("label_units", {})
    specs = resolve_targets(section.targets, store.label_names, units)
    if pair is not None:
        pair_layout, usable = _pair_layout(pair, store, section, train)
        mean = std = np.zeros(0)
    else:
        mean, std, usable = target_statistics(store, specs, train.val_fraction,
                                              train.test_fraction)
    if usable < train.batch_size:
        what = "objects" if pair is not None else \
            f"galaxies have a known {'/'.join(section.targets)}"
        msg = (f"model {section.name}: only {usable} training {what}; need at least one "
               f"batch ({train.batch_size})")
        raise InvalidParameterError(msg)
    infos = [TargetInfo(s.name, s.unit, float(m), float(d))
             for s, m, d in zip(specs, mean, std, strict=True)]
    config = kind.network_config(section, store.bands)
    if pair is not None:
        config["pair"] = pair_layout
    source = input_source(config)
    _check_input(section, kind, source, store)
    bands = store.layout.photometry_bands
    if source != "images":  # provisional: the raw rows need the bands only
        config["photometry_input"] = PhotometryInput(
            bands, (1.0,) * len(bands), False, (0.0,), (1.0,)).to_dict()
    if source == "both" or pair is not None:  # a translator sizes its output from it
        config["image_shape"] = [len(store.bands), store.layout.height, store.layout.width]
    plan = TrainingPlan(store, section, train, specs, infos, usable, Normalization(()),
                        config, store.plan_shards(), fingerprint(section, train, store),
                        list(plugins or []), pair=pair)
    sample = _input_sample(plan.stream("train", False))
    images, photometry = plan.model_input.parts(sample)
    if photometry is not None:
        plan.config["photometry_input"] = PhotometryInput.fit(photometry, bands).to_dict()
    if images is None:
        assert photometry is not None
        plan.domain = TrainingDomain.of_photometry(bands, store.attrs,
                                                   photometry[:, 0]).to_dict()
    else:
        plan.normalization = Normalization.fit(images)
        if pair is not None:  # a translator starts from passing the input's flux through
            plan.config["input_scale"] = list(plan.normalization.scale)
        plan.domain = TrainingDomain.fit(images, store.bands, store.attrs).to_dict()
    return plan


def _check_input(section: ModelSettings, kind: ModelKind, source: str,
                 store: SurveyStore) -> None:
    """The kind offers the model's input and the store has it (one line if not)."""
    if source not in kind.input_sources:
        msg = (f"model {section.name}: kind {kind.name} reads {', '.join(kind.input_sources)}, "
               f"not {source}")
        raise InvalidParameterError(msg)
    if source != "photometry" and not store.layout.has_images:
        msg = (f"model {section.name} reads images but store {store.url} has none (a "
               "photometry-only store); set 'inputs: photometry' on a kind that offers it")
        raise InvalidParameterError(msg)
    if source != "images" and not store.layout.photometry_bands:
        msg = (f"model {section.name} reads photometry but store {store.url} has no "
               "photometry columns")
        raise InvalidParameterError(msg)


def _epoch_record(epoch: EpochResult) -> dict[str, Any]:
    """One epoch of the learning curve as the checkpoint keeps it."""
    return {"epoch": epoch.epoch, "train_loss": round(epoch.train_loss, 6),
            "val_loss": round(epoch.val_loss, 6), "seconds": round(epoch.seconds, 3),
            "samples_per_s": round(epoch.samples_per_s, 1), "weights": epoch.weights}


def finish_training(plan: TrainingPlan, model: torch.nn.Module, result: FitResult, *,
                    url: str, storage_options: dict[str, Any] | None, seconds: float,
                    extra_provenance: dict[str, Any] | None = None) -> TrainedModel:
    """Run the kind's closed-form step, score the model on the validation and test splits,
    take the kind's readouts and save the checkpoint.

    ``model`` holds the best weights of gradient training; the scores are those
    of the model as saved (after any closed-form step).
    """
    kind, task, train = plan.kind, plan.task(), plan.train
    model = model.cpu().eval()
    kind.after_fit(model, plan.data())
    metrics: dict[str, Any] = {"best_epoch": result.best_epoch,
                               "epochs_run": len(result.history),
                               "train_samples_per_s": result.best.samples_per_s,
                               "history": [_epoch_record(e) for e in result.history]}
    splits = ["val", "test"] if train.test_fraction > 0 else ["val"]
    for split in splits:
        _, predictions, targets, _ = evaluate(model, task, plan.stream(split, False).epoch())
        metrics[split] = task.metrics(predictions, targets) if len(targets) else {}
    readouts = kind.readouts(model, plan.data())
    if readouts is not None:
        metrics["readouts"] = readouts
    checkpoint = Checkpoint(
        kind=plan.section.kind, config=plan.config, bands=list(plan.store.bands),
        image_size=([plan.store.layout.height, plan.store.layout.width]
                    if input_source(plan.config) != "photometry" else [0, 0]),
        normalization=plan.normalization, targets=plan.infos,
        state_dict=copy.deepcopy(model.state_dict()), metrics=metrics, domain=plan.domain,
        provenance={"fingerprint": plan.fingerprint, "store": plan.store.url,
                    "name": plan.section.name, "train": train.model_dump(),
                    "training_galaxies": plan.usable, "seconds": round(seconds, 1),
                    "surveyproc_version": __version__, "torch_version": torch.__version__,
                    "python": platform.python_version(), "starts": result.starts,
                    **(extra_provenance or {})},
    )
    model_id = save_checkpoint(checkpoint, url, storage_options)
    return TrainedModel(plan.section.name, url, model_id, metrics)
