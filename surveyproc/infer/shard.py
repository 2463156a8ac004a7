"""One shard, start to finish: read its chunks, run the models, commit its catalog part.

This is what an inference actor does for every shard it is handed (and what
the serial path does in-process).  The work is a pipeline so that the models
never wait for storage or for the catalog (docs/design.md, "Inference
pipeline"):

- reader threads (``prefetch`` of them, shared by the shards in flight) read
  units of about ``batch_size`` objects aligned to the store's chunks (each
  chunk decoded once, no re-cutting copies), run the per-pixel checks (NaN,
  empty, saturated, outside the training domain) and normalise the pixels
  into network inputs, beside the models;
- the models take one shard at a time (the *model turn*), batch after batch
  of units already read;
- the shard's table is assembled, encoded to Parquet and committed after its
  model turn, while the next shard (an actor holds two) has the models.

A shard's rows (a few thousand) are held until its part is committed, so
memory per actor is bounded by two shards plus the prefetched units, never by
the store.  Each stage's seconds go into the shard's report (``stages``), which
``benchmarks/infer_profile.py`` turns into the actor loop's profile.
"""

from __future__ import annotations

import collections
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..catalog.commits import CommitRecord
from ..catalog.schema import CatalogSchema, list_column
from ..catalog.writer import CatalogWriter, encode_part
from ..flags import Flag
from ..kinds import load_plugins
from ..models.background import CutoutBackground, measure_background
from ..models.checkpoint import Checkpoint
from ..models.domain import TrainingDomain
from ..retry import retry_counts
from ..store import CutoutBatch, open_store
from ..store.shards import Shard
from .estimate import Estimator, blank_rows, merge_flags, pixel_checks
from .live_calibration import LiveCalibration, label_names, live_calibration, live_targets

__all__ = ["STAGES", "ShardProcessor", "ShardReport", "busy_seconds"]

#: The actor loop's stages, as ``ShardReport.stages`` names them: read (fetch and decode
#: pixels and columns), checks (per-pixel flags and the training-domain test), prepare
#: (normalisation): these three on reader threads; wait (the models waiting for a read),
#: forward (the networks), outputs (the rest of the model turn: host to device, the
#: kinds' columns: summaries, quantiles, activations), assemble (the shard's columns joined into an
#: Arrow table, flags, live calibration), encode (Parquet), commit (part and record).
STAGES = ("read", "checks", "prepare", "wait", "forward", "outputs", "assemble", "encode",
          "commit")


@dataclass
class ShardReport:
    """What processing one shard cost; the driver turns it into metrics."""

    index: int
    rows: int
    bytes_read: int
    batches: int
    failed_objects: int
    out_of_distribution: int = 0  # objects flagged OUT_OF_DISTRIBUTION
    ood_reasons: dict[str, int] = field(default_factory=dict)  # "(number) (band)" -> objects
    read_seconds: list[float] = field(default_factory=list)  # per unit, models waiting on it
    model_seconds: list[float] = field(default_factory=list)  # per batch
    write_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    accelerator_bytes: int = 0  # peak GPU memory allocated while processing (0: CPU)
    node: str = ""
    #: per (model, PDF target) counts for objects whose store holds the truth
    calibration: list[LiveCalibration] = field(default_factory=list)
    commit: CommitRecord | None = None  # the driver compacts these into the commit log
    #: chunks whose pixels could not be read: "objects A-B: cause" (their rows are flagged)
    quarantined: list[str] = field(default_factory=list)
    quarantined_objects: int = 0
    #: storage retries in this process since its previous report, per operation
    io_retries: dict[str, int] = field(default_factory=dict)
    #: seconds per stage of :data:`STAGES` (read and checks summed over reader threads)
    stages: dict[str, float] = field(default_factory=dict)
    #: wall-clock span of the shard in its actor (epoch seconds), and which process ran it;
    #: an actor overlaps two shards, so its busy time is the union of their spans
    started_at: float = 0.0
    finished_at: float = 0.0
    worker: str = ""

    def summary(self) -> ShardReport:
        """The same report without what the driver has folded in elsewhere (per-batch
        latencies go to the metrics, the commit record to the commit log, calibration counts
        and reasons to the run's totals), so a 10^5-shard run keeps little in the driver."""
        return replace(self, read_seconds=[], model_seconds=[], commit=None, calibration=[],
                       ood_reasons={}, io_retries={})

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds


def busy_seconds(reports: list[ShardReport]) -> float:
    """Seconds during which some actor was working on a shard, summed over actors: the
    union of each worker's shard spans (overlapping shards of one actor count once)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for report in reports:
        spans.setdefault(report.worker, []).append((report.started_at, report.finished_at))
    total = 0.0
    for intervals in spans.values():
        end = -np.inf
        for a, b in sorted(intervals):
            total += max(0.0, b - max(a, end))
            end = max(end, b)
    return total


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB else


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Unit:
    """One read unit, as a reader thread hands it to the models: its columns, the
    network inputs (the raw pixels are dropped once checked) and what the thread spent."""

    batch: CutoutBatch  # images None
    inputs: dict[tuple, torch.Tensor]
    pixel_flags: np.ndarray
    no_signal: np.ndarray
    outside: np.ndarray  # outside a model's training domain
    ood_reasons: dict[str, int]
    pixel_bytes: int
    seconds: dict[str, float]  # read, checks, prepare


class ShardProcessor:
    """Holds the store, the models and the catalog writer of one actor.

    :meth:`process` may be called from two threads at once (the actor's two shards in
    flight): their reads share the reader threads, their model turns take turns.
    """

    def __init__(self, *, store_url: str, store_options: dict[str, Any] | None,
                 checkpoints: list[tuple[str, bytes]], schema: dict[str, Any],
                 catalog_url: str, catalog_options: dict[str, Any] | None, run_id: str,
                 batch_size: int, prefetch: int = 2, device: str = "cpu",
                 plugins: list[str] | tuple[str, ...] = ()) -> None:
        load_plugins(plugins)  # an actor is a fresh process: the job's plug-in kinds first
        self.store = open_store(store_url, store_options, check_ids=False)
        self.schema = CatalogSchema.from_description(schema)
        by_name = {m.name: m for m in self.schema.models}
        loaded = [(by_name[name], Checkpoint.from_bytes(data, name))
                  for name, data in checkpoints]
        self.estimator = Estimator(loaded, device, self.store.label_names)
        domains: dict[str, TrainingDomain] = {}  # models trained on one sample: check once
        for _, checkpoint in loaded:
            domain = checkpoint.training_domain
            if domain is not None:
                domains[repr(checkpoint.domain)] = domain
        # per-object checks: pixel measures for image models, magnitudes and colours for
        # photometry models
        self.domains = [d for d in domains.values() if d.source == "images"]
        self.photometry_domains = [d for d in domains.values() if d.source == "photometry"]
        lay = self.store.layout
        self.estimator.warm_up(len(lay.bands), lay.height, lay.width)
        self.arrow_schema = self.schema.arrow()
        self.writer = CatalogWriter(catalog_url, catalog_options)
        self.run_id = run_id
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.live = live_targets(self.schema, self.store.label_names)
        self.live_labels = label_names(self.live)
        self.read_labels = sorted({*self.live_labels, *self.estimator.truth_labels})
        self._readers = (ThreadPoolExecutor(max_workers=prefetch,
                                            thread_name_prefix="surveyproc-read")
                         if prefetch > 0 else None)
        self._model_turn = threading.Lock()
        self._retries_lock = threading.Lock()
        self._retries = retry_counts()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    # -- reading (reader threads) ------------------------------------------------------------

    def _units(self, shard: Shard) -> list[tuple[int, int]]:
        """Read units of ``shard``: whole chunks, as many as fit in ``batch_size`` objects
        (a chunk larger than a batch is one unit, cut into batches as views)."""
        chunk = self.store.layout.chunk_objects
        step = max(chunk, self.batch_size - self.batch_size % chunk)
        return [(a, min(a + step, shard.stop)) for a in range(shard.start, shard.stop, step)]

    def _read_unit(self, start: int, stop: int) -> _Unit:
        t0 = time.perf_counter()
        estimator = self.estimator
        batch = self.store.read(start, stop, labels=self.read_labels,
                                images=estimator.reads_images,
                                photometry=estimator.reads_photometry, quarantine=True,
                                measures=bool(self.domains))
        t1 = time.perf_counter()
        images = batch.images
        if images is not None:
            pixel_flags, no_signal = pixel_checks(images)
        else:  # photometry models only: nothing to measure where every band is missing
            pixel_flags = np.zeros(len(batch), dtype=np.int32)
            known = [np.isfinite(batch.photometry[b]) for b in estimator.photometry_bands
                     if b in batch.photometry]
            no_signal = ~np.any(known, axis=0) if known else np.zeros(len(batch), dtype=bool)
        outside, reasons = self._outside(len(batch), images, batch.photometry, batch.measures)
        t2 = time.perf_counter()
        inputs = estimator.prepare(images, batch.photometry, batch.photometry_error)
        pixel_bytes = 0 if batch.unreadable else batch.nbytes
        batch.images = None
        batch.photometry, batch.photometry_error = {}, {}
        return _Unit(batch, inputs, pixel_flags, no_signal, outside, reasons, pixel_bytes,
                     {"read": t1 - t0, "checks": t2 - t1,
                      "prepare": time.perf_counter() - t2})

    def _outside(self, n: int, images: np.ndarray | None, photometry: dict[str, np.ndarray],
                 measures: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
        """Objects outside any model's training domain, and why: image models' domains
        judge the pixels' measures (``measures``: those the store keeps, else measured
        here), photometry models' the magnitudes and colours."""
        found: list[tuple[np.ndarray, dict[str, int]]] = []
        if images is not None and self.domains:
            # measuring is the costly part: read from the store, or once for every domain
            background = (measure_background(images) if measures is None else
                          CutoutBackground.from_array(measures, *images.shape[-2:]))
            found += [domain.outside(images, background) for domain in self.domains]
        found += [domain.outside_photometry(photometry) for domain in self.photometry_domains]
        outside = np.zeros(n, dtype=bool)
        reasons: dict[str, int] = {}
        for mask, counts in found:
            outside |= mask
            for reason, count in counts.items():
                reasons[reason] = reasons.get(reason, 0) + count
        return outside, reasons

    def _reads(self, shard: Shard) -> Iterator[Future[_Unit] | _Unit]:
        """The shard's units in order; the first ``prefetch`` reads are submitted before
        this returns (so they run while another shard has the models), and one more each
        time a unit is taken."""
        spans = collections.deque(self._units(shard))
        if self._readers is None:  # no read-ahead: read in the caller's thread
            return (self._read_unit(a, b) for a, b in spans)
        readers = self._readers
        pending = collections.deque(readers.submit(self._read_unit, *spans.popleft())
                                    for _ in range(min(self.prefetch, len(spans))))

        def take() -> Iterator[Future[_Unit]]:
            try:
                while pending:
                    future = pending.popleft()
                    if spans:
                        pending.append(readers.submit(self._read_unit, *spans.popleft()))
                    yield future
            finally:
                for future in pending:
                    future.cancel()
        return take()

    # -- one shard -------------------------------------------------------------------------

    def process(self, shard: Shard) -> ShardReport:
        """Infer every object of ``shard`` and commit its catalog part."""
        started, cpu0 = time.perf_counter(), _cpu_seconds()
        report = ShardReport(shard.index, 0, 0, 0, 0, started_at=time.time(),
                             worker=self.worker)
        reads = self._reads(shard)
        with self._model_turn:
            units, estimated = self._infer(reads, report)
        t0 = time.perf_counter()
        table = self._assemble(units, estimated, report)
        t1 = time.perf_counter()
        data = encode_part(table)
        t2 = time.perf_counter()
        report.commit = self.writer.commit_part(shard, data, table.num_rows, self.run_id)
        t3 = time.perf_counter()
        report.add("assemble", t1 - t0)
        report.add("encode", t2 - t1)
        report.add("commit", t3 - t2)
        report.write_seconds = t3 - t1
        report.rows = table.num_rows
        report.wall_seconds = time.perf_counter() - started
        report.finished_at = time.time()
        report.cpu_seconds = _cpu_seconds() - cpu0
        report.peak_rss_mb = _peak_rss_mb()
        report.io_retries = self._retries_since_last_report()
        return report

    def _infer(self, reads: Iterator[Future[_Unit] | _Unit], report: ShardReport
               ) -> tuple[list[_Unit], dict[str, np.ndarray]]:
        """The models over every unit of one shard (the model turn): the units read, and
        every estimate column joined over the shard."""
        units: list[_Unit] = []
        estimates: dict[str, list[np.ndarray]] = {}
        forward: list[float] = []
        while True:
            t0 = time.perf_counter()  # before the next item: without read-ahead, it reads
            item = next(reads, None)
            if item is None:
                break
            unit = item.result() if isinstance(item, Future) else item
            waited = time.perf_counter() - t0
            report.read_seconds.append(waited)
            report.add("wait", waited)
            for stage, seconds in unit.seconds.items():
                report.add(stage, seconds)
            units.append(unit)
            for a in range(0, len(unit.batch), self.batch_size):
                t0 = time.perf_counter()
                before = len(forward)
                rows = slice(a, a + self.batch_size)
                batch = {scale: x[rows] for scale, x in unit.inputs.items()}
                labels = {name: values[rows] for name, values in unit.batch.labels.items()}
                for name, values in self.estimator.run(batch, forward, labels).items():
                    estimates.setdefault(name, []).append(values)
                t1 = time.perf_counter()
                in_forward = sum(forward[before:])
                report.add("forward", in_forward)
                report.add("outputs", t1 - t0 - in_forward)
                report.model_seconds.append(t1 - t0)
                report.batches += 1
            unit.inputs = {}  # the shard keeps its rows' columns, not their pixels
        return units, {name: np.concatenate(parts) for name, parts in estimates.items()}

    def _assemble(self, units: list[_Unit], estimated: dict[str, np.ndarray],
                  report: ShardReport) -> pa.Table:
        """The shard's catalog rows: identity columns, flags, estimates (NaN where a cutout
        holds no signal); counts of flags and quarantined chunks go into ``report``."""
        def joined(values: list[np.ndarray]) -> np.ndarray:
            return values[0] if len(values) == 1 else np.concatenate(values)

        batches = [u.batch for u in units]
        for batch in batches:
            report.quarantined += batch.unreadable
            if batch.unreadable:
                report.quarantined_objects += int(
                    ((batch.flags & Flag.UNREADABLE) != 0).sum())
        for unit in units:
            report.bytes_read += unit.pixel_bytes
            for reason, count in unit.ood_reasons.items():
                report.ood_reasons[reason] = report.ood_reasons.get(reason, 0) + count
        store_flags = joined([b.flags for b in batches]).astype(np.int32)
        flags = merge_flags(joined([u.pixel_flags for u in units]), store_flags)
        report.failed_objects = int(((flags ^ store_flags) != 0).sum()
                                    + ((store_flags & Flag.UNREADABLE) != 0).sum())
        blank_rows(estimated, joined([u.no_signal for u in units]))
        ood = joined([u.outside for u in units])
        flags |= np.where(ood, np.int32(Flag.OUT_OF_DISTRIBUTION), np.int32(0))
        report.out_of_distribution = int(ood.sum())
        if self.live and estimated:
            labels = {name: joined([b.labels[name] for b in batches])
                      for name in self.live_labels}
            report.calibration = live_calibration(self.live, labels, estimated)
        return self._table({"object_id": joined([b.object_id for b in batches]),
                            "ra": joined([b.ra for b in batches]),
                            "dec": joined([b.dec for b in batches])}, flags, estimated)

    def close(self) -> None:
        """Stop the reader threads (an actor's process ends with it; the serial path calls
        this)."""
        if self._readers is not None:
            self._readers.shutdown(wait=False, cancel_futures=True)

    def _retries_since_last_report(self) -> dict[str, int]:
        with self._retries_lock:
            now = retry_counts()
            since = {op: n - self._retries.get(op, 0) for op, n in now.items()
                     if n > self._retries.get(op, 0)}
            self._retries = now
        return since

    def _table(self, read: dict[str, np.ndarray], flags: np.ndarray,
               estimated: dict[str, np.ndarray]) -> pa.Table:
        n = len(flags)
        columns: dict[str, pa.Array] = {
            "object_id": pa.array(read["object_id"], pa.int64()),
            "ra": pa.array(read["ra"], pa.float64()),
            "dec": pa.array(read["dec"], pa.float64()),
            "flags": pa.array(flags, pa.int32()),
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                                     [self.run_id]),
            "model_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                                       [self.schema.model_id]),
        }
        for name, values in estimated.items():
            if values.ndim == 1:
                columns[name] = pa.array(values)
            else:  # fixed-width rows -> list column (PDFs, activations)
                columns[name] = list_column(values)
        return pa.Table.from_pydict(columns, schema=self.arrow_schema)
