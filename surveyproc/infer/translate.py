"""``surveyproc translate``: a translator over a whole survey, into a translated store.

The job runs on the inference engine (:mod:`.engine`): the same shard queue, Ray actors
(or this process for ``memory://`` stores), retries of lost shards, progress and
metrics.  Only the work per shard differs: :class:`TranslationProcessor` reads the
shard's cutouts, runs the translator and writes the translated cutouts straight into the
new store, whole write units at a time, so actors never share a chunk and pixels never
pass through the driver.  The driver lays the store out and copies survey A's columns
first (a few bytes per object), and marks the store complete once every shard is in.

Exactly once: a shard's cutouts are overwritten whole if it runs again, and a small mark
per finished shard (``_written/`` in the store) lets a re-run of an interrupted job skip
the shards already written.  A store holding another model's translation is refused
unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..fs import is_process_local, normalize, redact
from ..jobs import JobSpec
from ..kinds import build_network, get_kind, load_plugins
from ..models.checkpoint import Checkpoint
from ..ops.ray_runtime import job_ray
from ..store import SurveyStore, open_store
from ..store.create import StoreWriter
from ..store.shards import Shard, plan_shards
from ..store.translated import (
    copy_columns,
    create_translated,
    done_marks,
    mark_done,
    store_attributes,
    translated_spec,
)
from .engine import DEFAULT_OBJECTS_PER_SHARD, InferResult, _shard_reports, job_checkpoint
from .shard import ShardReport

__all__ = ["TranslationPlan", "TranslationProcessor", "plan_translation", "run_translation"]

#: The mark of a store whose columns were all copied (shards are marked by index).
_COLUMNS_MARK = "columns"


@dataclass
class TranslationPlan:
    """Everything a translation run needs, checked before any actor starts."""

    store: SurveyStore
    model: str
    checkpoint: bytes
    model_id: str
    url: str
    shards: list[Shard]
    target: dict[str, Any]


def _translators(job: JobSpec) -> list[str]:
    return [m.name for m in job.models if get_kind(m.kind).paired_store(m) is not None]


def plan_translation(job: JobSpec, store: SurveyStore, model: str | None = None,
                     url: str | None = None, *, overwrite: bool = False) -> TranslationPlan:
    """Load and check the translator's checkpoint against ``store`` (survey A), choose the
    output (default ``<output dir>/translated/<model>.zarr``) and plan its shards.

    Raises
    ------
    InvalidParameterError
        No translator named, or several and none chosen; the output holds another
        model's translation (without ``overwrite``).
    CheckpointNotFoundError, CheckpointMismatchError
        The checkpoint is missing or does not fit the store.
    """
    translators = _translators(job)
    if model is None:
        if len(translators) != 1:
            msg = (f"job {job.name} has {len(translators)} translator models "
                   f"({', '.join(translators) or 'none'}); name one with --model")
            raise InvalidParameterError(msg)
        model = translators[0]
    checkpoint, data = job_checkpoint(job, model)
    target = checkpoint.config.get("pair")
    if target is None:
        msg = f"model {model} (kind {checkpoint.kind}) is not an image translator"
        raise InvalidParameterError(msg)
    checkpoint.check_store(store.bands, (store.layout.height, store.layout.width),
                           f"store {store.url}", has_images=store.layout.has_images)
    url = normalize(url) if url else job.outputs.translated(model)
    existing = store_attributes(url, job.output.storage_options)
    made_by = (existing or {}).get("provenance", {})
    if existing is not None and not overwrite and (
            made_by.get("model_id") != checkpoint.model_id or made_by.get("source") != store.url):
        msg = (f"{redact(url)} already holds a store that is not this model's translation of "
               f"{redact(store.url)} (model {made_by.get('model_id', 'unknown')}); choose "
               "another output or pass --overwrite")
        raise InvalidParameterError(msg)
    unit = translated_spec(store, target).write_unit
    per_shard = job.infer.objects_per_shard or max(
        unit, min(DEFAULT_OBJECTS_PER_SHARD, -(-store.n_objects // 16)))
    shards = plan_shards(store.n_objects, unit, objects_per_shard=per_shard)
    return TranslationPlan(store, model, data, checkpoint.model_id, url, shards, dict(target))


def run_translation(job: JobSpec, store: SurveyStore, plan: TranslationPlan, *,
                    overwrite: bool = False) -> InferResult:
    """Translate every shard of ``store`` not yet written into ``plan.url``; the result's
    ``catalog`` is the translated store's URL."""
    options = job.output.storage_options
    existing = None if overwrite else store_attributes(plan.url, options)
    if existing is not None and existing.get("complete"):
        return InferResult(plan.url, "", store.n_objects, len(plan.shards), 0,
                           len(plan.shards), 0, 0.0, True)
    if existing is None:
        writer, _ = create_translated(store, plan.url, plan.target, storage_options=options,
                                      provenance={"model": plan.model,
                                                  "model_id": plan.model_id},
                                      overwrite=overwrite)
        mark_done(plan.url, _COLUMNS_MARK, options)
    else:
        writer = StoreWriter(plan.url, options)
        if _COLUMNS_MARK not in done_marks(plan.url, options):  # interrupted while copying
            copy_columns(store, writer)
            mark_done(plan.url, _COLUMNS_MARK, options)
    done = done_marks(plan.url, options)
    todo = [s for s in plan.shards if _shard_mark(s) not in done]
    result = InferResult(plan.url, f"{job.name}-translate", store.n_objects, len(plan.shards),
                         0, len(plan.shards) - len(todo), 0, 0.0, False)
    processor = {"store_url": store.url, "store_options": store.storage_options,
                 "checkpoint": plan.checkpoint, "out_url": plan.url, "out_options": options,
                 "batch_size": job.resources.batch_size, "plugins": list(job.plugins)}
    serial = is_process_local(store.url) or is_process_local(plan.url)
    channel = "http" if serial or not job.metrics.enabled else job.metrics.export
    done_before = sum(len(s) for s in plan.shards if s not in todo)
    if todo:
        with contextlib.nullcontext() if serial else job_ray(job):
            for _ in _shard_reports(job, processor, todo, serial, channel, done_before, result,
                                    TranslationProcessor, desc="translate"):
                pass
    if result.shards_skipped + result.shards_run == len(plan.shards):
        writer.finalize(model=plan.model, model_id=plan.model_id)
        result.complete = True
    return result


def _shard_mark(shard: Shard) -> str:
    return f"shard-{shard.index:06d}"


class TranslationProcessor:
    """One actor's translator and store writer; :meth:`process` translates one shard."""

    def __init__(self, *, store_url: str, store_options: dict[str, Any] | None,
                 checkpoint: bytes, out_url: str, out_options: dict[str, Any] | None,
                 batch_size: int, device: str = "cpu",
                 plugins: list[str] | tuple[str, ...] = ()) -> None:
        load_plugins(plugins)
        self.store = open_store(store_url, store_options, check_ids=False)
        self.checkpoint = Checkpoint.from_bytes(checkpoint, "the translation model")
        self.kind = get_kind(self.checkpoint.kind)
        self.device = torch.device(device)
        self.module = build_network(self.checkpoint).to(self.device).eval()
        self.model_input = self.checkpoint.model_input()
        self.unit = translated_spec(self.store, self.checkpoint.config["pair"]).write_unit
        self.writer = StoreWriter(out_url, out_options)
        self.out_url, self.out_options = out_url, out_options
        self.batch_size = batch_size
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, shard: Shard) -> ShardReport:
        """Translate ``shard``'s cutouts, write them, then mark the shard written."""
        started = time.perf_counter()
        report = ShardReport(shard.index, 0, 0, 0, 0, started_at=time.time(),
                             worker=self.worker)
        units = [(a, min(a + self.unit, shard.stop)) for a in range(shard.start, shard.stop,
                                                                     self.unit)]
        t0 = time.perf_counter()
        for batch in self.store.iter_batches(units, prefetch=2, labels=False,
                                             photometry=False):
            t1 = time.perf_counter()
            report.add("wait", t1 - t0)
            assert batch.images is not None
            report.bytes_read += batch.nbytes
            x = self.model_input.apply(batch.images)
            parts = []
            with torch.inference_mode():
                for a in range(0, len(x), self.batch_size):
                    b0 = time.perf_counter()
                    parts.append(self.kind.translate(
                        self.module, x[a:a + self.batch_size].to(self.device),
                        self.checkpoint, batch.start + a))
                    report.model_seconds.append(time.perf_counter() - b0)
                    report.batches += 1
            t2 = time.perf_counter()
            report.add("forward", t2 - t1)
            self.writer.write_images(batch.start, np.concatenate(parts))
            t0 = time.perf_counter()
            report.add("commit", t0 - t2)
            report.write_seconds += t0 - t2
        mark_done(self.out_url, _shard_mark(shard), self.out_options)
        report.rows = len(shard)
        report.wall_seconds = time.perf_counter() - started
        report.finished_at = time.time()
        return report

    def close(self) -> None:
        """Nothing held open beyond the store's own readers."""
        self.store.close()
