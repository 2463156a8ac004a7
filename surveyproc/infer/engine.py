"""``surveyproc infer``: the store, in chunk-aligned shards, through Ray actors into the catalog.

Design (see docs/design.md, "Inference"): Ray Core actors and a shard queue
held by the driver.  Each actor holds one replica of every model and a store
reader; the driver hands each actor two shards at a time (the actor works on
both at once: one shard's reads and commit overlap the other's models, so the
models never wait for storage or for the driver; see shard.py), records each
finished shard's report, and hands out the next.  An actor reads its
shard's chunks itself, with prefetch, so pixels never pass through the driver
or the object store, and commits the shard's catalog part itself.  Memory is
bounded by actors x 2 x (shard rows + prefetched read units), whatever the store
size.

A shard whose actor dies is handed out again to a fresh actor that replaces
the dead one; a shard that fails three times stops the run with one line
naming the cause.
Shards already committed by an earlier run are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..catalog.commits import COMPACT_EVERY, CommitRecord
from ..catalog.schema import CatalogSchema, name_shared_columns
from ..catalog.writer import CatalogWriter
from ..errors import (
    CheckpointNotFoundError,
    InvalidParameterError,
    SurveyprocError,
    describe_error,
)
from ..fs import is_process_local, read_bytes, redact
from ..jobs import JobSpec
from ..kinds import build_network, get_kind
from ..models.checkpoint import Checkpoint
from ..ops.metrics import PipelineMetrics
from ..ops.progress import progress_bar
from ..ops.ray_runtime import job_ray
from ..store import SurveyStore
from ..store.shards import Shard
from .estimate import model_columns
from .shard import ShardProcessor, ShardReport

__all__ = ["InferPlan", "InferResult", "plan_inference", "run_inference"]

log = logging.getLogger(__name__)

#: Default shard size: enough objects that per-shard overheads (a part file, a commit
#: record, a driver round trip) vanish, few enough that a lost shard costs seconds.
DEFAULT_OBJECTS_PER_SHARD = 4096
MAX_ATTEMPTS = 3
#: Shards handed to each actor at once, processed concurrently (see shard.py)
IN_FLIGHT = 2


@dataclass
class InferPlan:
    """Everything an inference run needs, checked before any actor starts."""

    store: SurveyStore
    shards: list[Shard]
    schema: CatalogSchema
    checkpoints: list[tuple[str, bytes]]
    catalog: str


@dataclass
class InferResult:
    """What a run did (URLs are safe to print)."""

    catalog: str
    run_id: str
    n_objects: int
    n_shards: int
    shards_run: int
    shards_skipped: int
    objects_run: int
    seconds: float
    complete: bool
    metrics_url: str | None = None
    retries: int = 0  # shards handed out again after their actor died or failed
    #: objects flagged OUT_OF_DISTRIBUTION by this run, and outside which (number, band)
    out_of_distribution: int = 0
    ood_reasons: dict[str, int] = field(default_factory=dict)
    peak_actor_rss_mb: float = 0.0
    #: chunks whose pixels stayed unreadable ("objects A-B: cause"); their rows are flagged
    quarantined: list[str] = field(default_factory=list)
    quarantined_objects: int = 0
    #: storage operations retried after transient errors (actors and driver), per operation
    storage_retries: dict[str, int] = field(default_factory=dict)
    #: One summary per shard run (index, rows, node, seconds, memory); the per-batch
    #: latencies go to the metrics only, so a million-shard run keeps little here.
    reports: list[ShardReport] = field(default_factory=list)

    @property
    def cutouts_per_s(self) -> float:
        return self.objects_run / self.seconds if self.seconds > 0 else 0.0


def job_checkpoint(job: JobSpec, name: str) -> tuple[Checkpoint, bytes]:
    """Model ``name``'s checkpoint in the job's output (and its bytes, which travel to the
    actors), checked to build: weights of another architecture are refused here, in
    one line, not in the actors."""
    url = job.outputs.checkpoint(name)
    try:
        data = read_bytes(url, job.output.storage_options)
    except FileNotFoundError:
        msg = (f"model {name}: no checkpoint at {redact(url)}; train it first "
               "(surveyproc train JOB.yaml)")
        raise CheckpointNotFoundError(msg) from None
    checkpoint = Checkpoint.from_bytes(data, f"checkpoint {redact(url)}")
    build_network(checkpoint)
    return checkpoint, data


def plan_inference(job: JobSpec, store: SurveyStore) -> InferPlan:
    """Load and check the job's checkpoints against ``store``; plan shards and columns.

    Raises
    ------
    InvalidParameterError
        The job names no models.
    CheckpointNotFoundError, CheckpointMismatchError
        A checkpoint is missing or does not fit the store (bands, cutout size, flux
        unit, sky, pixel scale: see :meth:`Checkpoint.check_domain`).
    CatalogMismatchError
        The output already holds a catalog of another store, shard plan or models.
    """
    # by default every model that makes catalog columns (a translator makes a store:
    # ``surveyproc translate``); one named in infer.models is checked like any other
    names = job.infer.models or [m.name for m in job.models if get_kind(m.kind).writes_catalog]
    if not names:
        msg = (f"job {job.name} names no models that write catalog columns (add a 'models' "
               "section; a translator's survey is written by 'surveyproc translate')")
        raise InvalidParameterError(msg)
    loaded: list[tuple[str, Checkpoint, bytes]] = []
    warnings: list[str] = []
    for name in names:
        checkpoint, data = job_checkpoint(job, name)
        checkpoint.check_store(store.bands, (store.layout.height, store.layout.width),
                               f"store {store.url}", has_images=store.layout.has_images,
                               photometry_bands=store.layout.photometry_bands,
                               error_bands=store.layout.photometry_error_bands)
        for warning in checkpoint.check_domain(store.attrs, f"store {store.url}",
                                               job.infer.pixel_scale_tolerance):
            if warning not in warnings:
                warnings.append(warning)
        loaded.append((name, checkpoint, data))
    columns = name_shared_columns([model_columns(name, c) for name, c, _ in loaded])
    # Default: about 4,096 objects, and at least 16 shards so that up to 8 actors all work;
    # it depends on the store alone, so a re-run with other resources continues the catalog.
    per_shard = job.infer.objects_per_shard or max(
        store.layout.write_unit, min(DEFAULT_OBJECTS_PER_SHARD, -(-store.n_objects // 16)))
    shards = store.plan_shards(objects_per_shard=per_shard)
    extra = {"store": {"url": store.url, "n_objects": store.n_objects,
                       "created": store.attrs.get("provenance", {}).get("created"),
                       "bands": list(store.bands)},
             "shards": {"count": len(shards), "objects_per_shard": per_shard,
                        "edges": [s.start for s in shards[:1]] + [s.stop for s in shards][-1:]}}
    schema = CatalogSchema(columns, extra)
    # an output holding another run is refused here, before Ray starts or anything is written
    CatalogWriter(job.outputs.catalog, job.output.storage_options).check(
        schema.describe(), overwrite=job.infer.overwrite)
    for warning in warnings:
        log.warning("%s", warning)
    return InferPlan(store, shards, schema, [(name, data) for name, _, data in loaded],
                     job.outputs.catalog)


def _threads(job: JobSpec) -> int:
    return job.resources.threads_per_actor or max(1, math.ceil(job.resources.cpus_per_actor))


class InferenceActor:
    """A Ray actor: one model replica set, one store reader, one catalog writer (or, with
    another ``processor_class`` such as the translation job's, whatever that writes)."""

    def __init__(self, threads: int, use_gpu: bool, job_name: str, channel: str,
                 processor_class: type = ShardProcessor, **processor: Any) -> None:
        import torch

        torch.set_num_threads(threads)
        self.cuda = use_gpu and torch.cuda.is_available()
        self.processor = processor_class(device="cuda" if self.cuda else "cpu", **processor)
        # on the ray channel the actor exports its own measures through its node's agent
        self.metrics = PipelineMetrics(job_name, "ray") if channel == "ray" else None

    def process(self, shard: Shard) -> ShardReport:
        import ray
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        report = self.processor.process(shard)
        report.node = ray.get_runtime_context().get_node_id()[:12]
        if self.cuda:
            report.accelerator_bytes = int(torch.cuda.max_memory_allocated())
        if self.metrics is not None:
            self.metrics.record_shard(report)
        return report


def _new_run_id(job: JobSpec) -> str:
    return f"{job.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run_inference(job: JobSpec, store: SurveyStore, plan: InferPlan | None = None
                  ) -> InferResult:
    """Infer every object of ``store`` that the catalog does not hold yet (``plan``: from
    :func:`plan_inference`, when the caller checked the checkpoints before starting Ray)."""
    plan = plan or plan_inference(job, store)
    writer = CatalogWriter(plan.catalog, job.output.storage_options)
    committed = writer.prepare(plan.schema.describe(), overwrite=job.infer.overwrite)
    todo = [s for s in plan.shards if s.index not in committed]
    if job.infer.stop_after_shards is not None:
        todo = todo[:job.infer.stop_after_shards]
    run_id = _new_run_id(job)
    done_before = sum(len(s) for s in plan.shards if s.index in committed)
    if committed:
        log.info("catalog %s: %d of %d shards already committed; running the other %d",
                 redact(plan.catalog), len(committed), len(plan.shards),
                 len(plan.shards) - len(committed))
    processor = {"store_url": store.url, "store_options": store.storage_options,
                 "checkpoints": plan.checkpoints, "schema": plan.schema.describe(),
                 "catalog_url": plan.catalog, "catalog_options": job.output.storage_options,
                 "run_id": run_id, "batch_size": job.resources.batch_size,
                 "prefetch": job.infer.prefetch, "plugins": list(job.plugins)}
    serial = is_process_local(store.url) or is_process_local(plan.catalog)
    # no Ray in serial mode, so no Ray metrics agent: the driver's exporter then
    channel = "http" if serial or not job.metrics.enabled else job.metrics.export
    result = InferResult(plan.catalog, run_id, store.n_objects, len(plan.shards), 0,
                         len(committed), 0, 0.0, False)
    if todo:  # nothing to do: no Ray, no actors, no models loaded
        # Ray first: the driver's Ray-channel metrics need a connected Ray
        with contextlib.nullcontext() if serial else job_ray(job):
            _run_shards(job, processor, todo, serial, channel, done_before, result, writer)
    if len(committed) + result.shards_run == len(plan.shards):
        if not writer.finished:  # a finished catalog's manifest is already there
            writer.finish(len(plan.shards), store.n_objects)
        result.complete = True
    return result


#: The driver folds new commit records into the commit log at least this often (seconds).
COMPACT_SECONDS = 60.0


def _run_shards(job: JobSpec, processor: dict[str, Any], todo: list[Shard], serial: bool,
                channel: Literal["http", "ray"], done_before: int, result: InferResult,
                writer: CatalogWriter) -> None:
    """Process ``todo`` (serially or on actors), recording metrics and filling ``result``;
    every :data:`COMPACT_EVERY` shards, :data:`COMPACT_SECONDS` and at the end, the new
    commit records go into the commit log (a crash before that leaves them as files,
    which the next run compacts)."""
    fresh: list[CommitRecord] = []
    compacted_at = time.monotonic()
    try:
        for report in _shard_reports(job, processor, todo, serial, channel, done_before,
                                     result):
            if report.commit is not None:
                fresh.append(report.commit)
            if len(fresh) >= COMPACT_EVERY or time.monotonic() - compacted_at > COMPACT_SECONDS:
                writer.compact(fresh)
                fresh, compacted_at = [], time.monotonic()
    except BaseException:
        with contextlib.suppress(Exception):  # the run's own error is the one to report
            writer.compact(fresh)
        raise
    writer.compact(fresh)


def _shard_reports(job: JobSpec, processor: dict[str, Any], todo: list[Shard], serial: bool,
                   channel: Literal["http", "ray"], done_before: int, result: InferResult,
                   processor_class: type = ShardProcessor, desc: str = "infer"):
    """Yield each finished shard's report, after recording it in metrics and ``result``
    (``processor_class(**processor)`` processes a shard: the catalog's by default)."""
    metrics = PipelineMetrics(job.name, channel)
    metrics.planned(sum(len(s) for s in todo))
    started = time.perf_counter()
    server = (metrics.serve(job.metrics.host, job.metrics.port) if job.metrics.enabled
              else contextlib.nullcontext())
    with server as url, progress_bar(total=result.n_objects, desc=desc, unit="cutout") as bar:
        result.metrics_url = url
        bar.update(done_before)
        reports = (_serial(processor, todo, processor_class) if serial
                   else _on_ray(job, processor, todo, metrics, result, processor_class))
        for report in reports:
            if channel == "http":  # on the ray channel the actor recorded it
                metrics.record_shard(report)
            result.shards_run += 1
            result.objects_run += report.rows
            result.peak_actor_rss_mb = max(result.peak_actor_rss_mb, report.peak_rss_mb)
            result.out_of_distribution += report.out_of_distribution
            result.quarantined += report.quarantined
            result.quarantined_objects += report.quarantined_objects
            for operation, count in report.io_retries.items():
                result.storage_retries[operation] = (
                    result.storage_retries.get(operation, 0) + count)
            for reason, count in report.ood_reasons.items():
                result.ood_reasons[reason] = result.ood_reasons.get(reason, 0) + count
            result.reports.append(report.summary())
            bar.update(report.rows)
            elapsed = time.perf_counter() - started
            metrics.committed(result.objects_run / elapsed if elapsed > 0 else 0.0)
            yield report
    result.seconds = time.perf_counter() - started


def _serial(processor: dict[str, Any], shards: list[Shard],
            processor_class: type = ShardProcessor):
    """In this process: for ``memory://`` stores and catalogs, which actors cannot see."""
    local = processor_class(**processor)
    try:
        for shard in shards:
            yield local.process(shard)
    finally:
        local.close()


def _on_ray(job: JobSpec, processor: dict[str, Any], shards: list[Shard],
            metrics: PipelineMetrics, result: InferResult,
            processor_class: type = ShardProcessor):
    """Hand ``shards`` to a pool of actors, two in flight per actor; yield reports."""
    import ray  # started (or joined) by run_inference

    res = job.resources
    n_actors = max(1, min(res.actors, len(shards)))
    # Ray would restart a dead actor itself, but its constructor arguments (the
    # checkpoints) would then have to outlive the call; a fresh actor is simpler.  Two
    # calls run at once, one per shard in flight: one shard's reads and commit overlap
    # the other's model turn (see shard.py).
    actor_class: Any = ray.remote(num_cpus=res.cpus_per_actor, num_gpus=res.gpus_per_actor,
                                  max_restarts=0, max_task_retries=0)(InferenceActor)
    actor_class = actor_class.options(max_concurrency=IN_FLIGHT)

    def new_actor() -> Any:
        return actor_class.remote(_threads(job), res.gpus_per_actor > 0, job.name,
                                  metrics.channel, processor_class, **processor)

    actors = [new_actor() for _ in range(n_actors)]
    queue: deque[Shard] = deque(shards)
    attempts: dict[int, int] = {}
    pending: dict[Any, tuple[Shard, int]] = {}
    load = [0] * n_actors

    def hand_out() -> None:
        for slot, actor in enumerate(actors):
            while queue and load[slot] < IN_FLIGHT:
                shard = queue.popleft()
                pending[actor.process.remote(shard)] = (shard, slot)
                load[slot] += 1
        metrics.in_flight(len(pending))

    try:
        hand_out()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard, slot = pending.pop(ready[0])
            load[slot] -= 1
            try:
                report = ray.get(ready[0])
            except ray.exceptions.RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, SurveyprocError):
                    raise cause from None
                _retry_or_fail(shard, attempts, queue, metrics, error)
                result.retries += 1
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
                _retry_or_fail(shard, attempts, queue, metrics, error)
                result.retries += 1
                if isinstance(error, ray.exceptions.RayActorError):
                    _replace(actors, slot, new_actor, pending, queue, load)
            else:
                yield report
            hand_out()
    finally:
        for ref in pending:
            ray.cancel(ref)
        for actor in actors:
            ray.kill(actor)


def _replace(actors: list[Any], slot: int, new_actor: Any, pending: dict[Any, tuple[Shard, int]],
             queue: deque[Shard], load: list[int]) -> None:
    """Swap a dead actor for a fresh one; its other pending shard goes back in the queue."""
    import ray

    for ref, (shard, owner) in list(pending.items()):
        if owner == slot:
            del pending[ref]
            queue.appendleft(shard)
    load[slot] = 0
    ray.kill(actors[slot])
    actors[slot] = new_actor()


def _retry_or_fail(shard: Shard, attempts: dict[int, int], queue: deque[Shard],
                   metrics: PipelineMetrics, error: Exception) -> None:
    attempts[shard.index] = attempts.get(shard.index, 1) + 1
    if attempts[shard.index] > MAX_ATTEMPTS:
        msg = (f"shard {shard.index} (objects {shard.start}-{shard.stop}) failed "
               f"{MAX_ATTEMPTS} times; last cause: {describe_error(error)}")
        raise SurveyprocError(msg) from None
    log.warning("shard %d failed (%s); handing it out again", shard.index,
                describe_error(error))
    metrics.retry()
    queue.appendleft(shard)
