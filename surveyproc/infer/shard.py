"""One shard, start to finish: read its chunks, run the models, commit its catalog part.

This is what an inference actor does for every shard it is handed (and what
the serial path does in-process).  The next chunks are read on background
threads while the models compute (``prefetch``), chunks are cut into model
batches of ``batch_size``, and the shard's rows (a few thousand) are held
until the part is committed, so memory per actor is bounded by the shard
and prefetch sizes, never by the store.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from ..catalog.commits import CommitRecord
from ..catalog.schema import CatalogSchema, list_column
from ..catalog.writer import CatalogWriter
from ..flags import Flag
from ..kinds import load_plugins
from ..models.background import measure_background
from ..models.checkpoint import Checkpoint
from ..models.domain import TrainingDomain
from ..retry import retry_counts
from ..store import open_store
from ..store.shards import Shard
from .estimate import Estimator, blank_rows, merge_flags, pixel_checks
from .live_calibration import LiveCalibration, label_names, live_calibration, live_targets

__all__ = ["ShardProcessor", "ShardReport"]


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
    read_seconds: list[float] = field(default_factory=list)  # per batch, waiting on reads
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

    def summary(self) -> ShardReport:
        """The same report without what the driver has folded in elsewhere (per-batch
        latencies go to the metrics, the commit record to the commit log, calibration counts
        and reasons to the run's totals), so a 10^5-shard run keeps little in the driver."""
        return replace(self, read_seconds=[], model_seconds=[], commit=None, calibration=[],
                       ood_reasons={}, io_retries={})


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB else


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ShardProcessor:
    """Holds the store, the models and the catalog writer of one actor."""

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
        self.estimator = Estimator(loaded, device)
        domains: dict[str, TrainingDomain] = {}  # models trained on one sample: check once
        for _, checkpoint in loaded:
            domain = checkpoint.training_domain
            if domain is not None:
                domains[repr(checkpoint.domain)] = domain
        self.domains = list(domains.values())
        lay = self.store.layout
        self.estimator.warm_up(len(lay.bands), lay.height, lay.width)
        self.arrow_schema = self.schema.arrow()
        self.writer = CatalogWriter(catalog_url, catalog_options)
        self.run_id = run_id
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.live = live_targets(self.schema, self.store.label_names)
        self.live_labels = label_names(self.live)
        self._retries = retry_counts()

    def _chunks(self, shard: Shard) -> list[tuple[int, int]]:
        step = self.store.layout.chunk_objects
        return [(a, min(a + step, shard.stop)) for a in range(shard.start, shard.stop, step)]

    def _model_batches(self, shard: Shard, report: ShardReport
                       ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray] | None]]:
        """Yield (images, identity or None) with ``batch_size`` cutouts (fewer at the end).

        Chunks arrive in order; images are re-cut into model batches, while the
        identity columns of each chunk are yielded once, with its first batch.
        """
        pending: list[np.ndarray] = []
        held = 0
        waited = time.perf_counter()
        for chunk in self.store.iter_batches(self._chunks(shard), prefetch=self.prefetch,
                                             labels=self.live_labels, photometry=False,
                                             quarantine=True):
            if chunk.unreadable:
                report.quarantined.append(f"objects {chunk.start}-{chunk.stop}: "
                                          f"{chunk.unreadable}")
                report.quarantined_objects += len(chunk)
            else:
                report.bytes_read += chunk.nbytes
            identity = {"object_id": chunk.object_id, "ra": chunk.ra, "dec": chunk.dec,
                        "flags": chunk.flags, **{f"label:{name}": chunk.labels[name]
                                                 for name in self.live_labels}}
            assert chunk.images is not None
            images = chunk.images
            first = True
            while len(images):
                take = min(self.batch_size - held, len(images))
                pending.append(images[:take])
                images, held = images[take:], held + take
                if held == self.batch_size:
                    report.read_seconds.append(time.perf_counter() - waited)
                    yield np.concatenate(pending), identity if first else None
                    first, pending, held = False, [], 0
                    waited = time.perf_counter()
            if first:  # the chunk fitted inside a partial batch: pass its identity along
                yield np.empty((0,), dtype=np.float32), identity
        if held:
            report.read_seconds.append(time.perf_counter() - waited)
            yield np.concatenate(pending), None

    def process(self, shard: Shard) -> ShardReport:
        """Infer every object of ``shard`` and commit its catalog part."""
        started, cpu0 = time.perf_counter(), _cpu_seconds()
        report = ShardReport(shard.index, 0, 0, 0, 0)
        identity: dict[str, list[np.ndarray]] = {
            "object_id": [], "ra": [], "dec": [], "flags": [],
            **{f"label:{name}": [] for name in self.live_labels}}
        estimates: dict[str, list[np.ndarray]] = {}
        flag_parts: list[np.ndarray] = []
        blank_parts: list[np.ndarray] = []
        ood_parts: list[np.ndarray] = []
        for images, chunk_identity in self._model_batches(shard, report):
            if chunk_identity is not None:
                for name, values in chunk_identity.items():
                    identity[name].append(values)
            if len(images) == 0:
                continue
            t0 = time.perf_counter()
            for name, values in self.estimator(images).items():
                estimates.setdefault(name, []).append(values)
            pixel, no_signal = pixel_checks(images)
            flag_parts.append(pixel)
            blank_parts.append(no_signal)
            ood_parts.append(self._outside(images, report))
            report.model_seconds.append(time.perf_counter() - t0)
            report.batches += 1
        # each column joined once, for the table and the live calibration alike
        read = {name: np.concatenate(parts) for name, parts in identity.items()}
        estimated = {name: np.concatenate(parts) for name, parts in estimates.items()}
        store_flags = read["flags"].astype(np.int32)
        pixel = np.concatenate(flag_parts) if flag_parts else np.zeros(0, dtype=np.int32)
        flags = merge_flags(pixel, store_flags)
        report.failed_objects = int(((flags ^ store_flags) != 0).sum()
                                    + ((store_flags & Flag.UNREADABLE) != 0).sum())
        if blank_parts:
            blank_rows(estimated, np.concatenate(blank_parts))
        if ood_parts:
            ood = np.concatenate(ood_parts)
            flags |= np.where(ood, np.int32(Flag.OUT_OF_DISTRIBUTION), np.int32(0))
            report.out_of_distribution = int(ood.sum())
        table = self._table(read, flags, estimated)
        if self.live and estimated:
            labels = {name: read[f"label:{name}"] for name in self.live_labels}
            report.calibration = live_calibration(self.live, labels, estimated)
        t0 = time.perf_counter()
        report.commit = self.writer.commit(shard, table, self.run_id)
        report.write_seconds = time.perf_counter() - t0
        report.rows = table.num_rows
        report.wall_seconds = time.perf_counter() - started
        report.cpu_seconds = _cpu_seconds() - cpu0
        report.peak_rss_mb = _peak_rss_mb()
        report.io_retries = self._retries_since_last_report()
        return report

    def _retries_since_last_report(self) -> dict[str, int]:
        now = retry_counts()
        since = {op: n - self._retries.get(op, 0) for op, n in now.items()
                 if n > self._retries.get(op, 0)}
        self._retries = now
        return since

    def _outside(self, images: np.ndarray, report: ShardReport) -> np.ndarray:
        """Objects of a batch outside any model's training domain; reasons go to ``report``."""
        outside = np.zeros(len(images), dtype=bool)
        if not self.domains:
            return outside
        background = measure_background(images)  # the costly part: once for every domain
        for domain in self.domains:
            mask, reasons = domain.outside(images, background)
            outside |= mask
            for reason, count in reasons.items():
                report.ood_reasons[reason] = report.ood_reasons.get(reason, 0) + count
        return outside

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
