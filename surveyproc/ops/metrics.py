"""Prometheus metrics of a running job, through one of two channels.

``metrics.export: http`` (the laptop default): the driver runs a
prometheus-client exporter on ``metrics.host:port`` (127.0.0.1 unless told
otherwise) and records everything: actors send their measures (read, model,
write seconds, bytes, CPU time, memory, live calibration counts) back with each
finished shard.

``metrics.export: ray`` (clusters): every process records what it knows through
``ray.util.metrics`` -- inference actors their shards' measures, Ray Train
workers their epochs, the driver the plan, queue and retries -- and Ray's
per-node metrics agent (``--metrics-export-port``, 8080 under KubeRay) serves
them on every node, which is what KubeRay's monitoring scrapes.  Chosen over
per-pod exporters because Ray already runs one agent per node with a port
KubeRay names, so nothing new is opened or discovered and the series survive
the actors that made them; Ray prefixes custom series with ``ray_``, which the
PodMonitor's relabelling (deploy/podmonitor.yaml) strips, so the dashboard and
alert rules see the same ``surveyproc_*`` names from either channel.

Names follow DESIGN.md (``surveyproc_`` prefix, units in names).  Labels:
``job_name`` (the job file's name; Prometheus keeps ``job`` for the scrape
job), ``node`` (Ray node id, 12 hex digits) where a node did the work,
``model``/``target`` for calibration and training -- never anything per object.
Every definition lives in one table (:data:`METRICS`), used by both channels.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:  # the driver hands over what the actors report
    from ..infer.shard import ShardReport

__all__ = ["CHANNELS", "METRICS", "PipelineMetrics", "TrainMetrics", "recorder"]

log = logging.getLogger(__name__)

Channel = Literal["http", "ray"]
CHANNELS: tuple[Channel, ...] = ("http", "ray")

#: Seconds per batch and stage: 1 ms .. 1 min.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
STAGES = ("read", "model", "write")


@dataclass(frozen=True)
class MetricDef:
    """One series family: its type, meaning and labels (name without ``_total``)."""

    kind: Literal["counter", "gauge", "histogram"]
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


_JOB, _NODE = ("job_name",), ("job_name", "node")
_CAL = ("job_name", "model", "target")
_TRAIN = ("job_name", "model", "rank")

#: Every surveyproc series.
METRICS: dict[str, MetricDef] = {
    "surveyproc_cutouts_processed": MetricDef("counter", "Cutouts inferred and committed.",
                                              _NODE),
    "surveyproc_bytes_read": MetricDef("counter", "Decompressed pixel bytes read from the "
                                       "store.", _NODE),
    "surveyproc_batches": MetricDef("counter", "Model batches run.", _NODE),
    "surveyproc_failed_objects": MetricDef("counter", "Objects flagged because their input "
                                           "was unusable.", _NODE),
    "surveyproc_shards_committed": MetricDef("counter", "Shards whose catalog part is "
                                             "committed.", _JOB),
    "surveyproc_shard_retries": MetricDef("counter", "Shards handed out again after a "
                                          "failure.", _JOB),
    "surveyproc_storage_retries": MetricDef("counter", "Storage operations (read, write, "
                                            "list, delete) retried after a transient error.",
                                            ("job_name", "node", "operation")),
    "surveyproc_quarantined_objects": MetricDef("counter", "Objects whose pixels stayed "
                                                "unreadable, written flagged UNREADABLE.",
                                                _NODE),
    "surveyproc_inflight_shards": MetricDef("gauge", "Shards handed to actors and not "
                                            "finished.", _JOB),
    "surveyproc_objects_planned": MetricDef("gauge", "Objects this run has to process.", _JOB),
    "surveyproc_cutouts_per_second": MetricDef("gauge", "Committed cutouts per second since "
                                               "the run started.", _JOB),
    "surveyproc_actor_cpu_utilisation": MetricDef("gauge", "CPU seconds per wall second of "
                                                  "the node's last shard.", _NODE),
    "surveyproc_actor_memory_bytes": MetricDef("gauge", "Peak resident memory of the node's "
                                               "last actor to finish a shard.", _NODE),
    "surveyproc_actor_accelerator_memory_bytes": MetricDef(
        "gauge", "Peak GPU memory the node's last shard allocated (0: a CPU actor).", _NODE),
    "surveyproc_stage_seconds": MetricDef("histogram", "Seconds per batch (read, model) or "
                                          "per shard part (write).", ("job_name", "stage"),
                                          LATENCY_BUCKETS),
    "surveyproc_actor_stage_seconds": MetricDef(
        "counter", "Seconds the actors spent in each stage of their loop (read and checks "
        "on reader threads, beside the models; wait: the models waiting for a read).",
        ("job_name", "node", "stage")),
    "surveyproc_calibration_objects": MetricDef(
        "counter", "Objects with a known true value whose PDF was judged live.", _CAL),
    "surveyproc_calibration_covered": MetricDef(
        "counter", "Of those, objects whose true value lies in the PDF's central interval "
        "(interval 0.68 or 0.95).", (*_CAL, "interval")),
    "surveyproc_calibration_pit": MetricDef(
        "counter", "Of those, objects whose PIT lies in the decile ending at pit_bin.",
        (*_CAL, "pit_bin")),
    "surveyproc_train_epoch": MetricDef("gauge", "Last finished epoch (1-based).", _TRAIN),
    "surveyproc_train_loss": MetricDef("gauge", "Mean training loss of the last epoch.",
                                       _TRAIN),
    "surveyproc_train_val_loss": MetricDef("gauge", "Validation loss of the last epoch.",
                                           _TRAIN),
    "surveyproc_train_samples_per_second": MetricDef("gauge", "Training samples per second "
                                                     "of this worker.", _TRAIN),
    "surveyproc_train_val_metric": MetricDef("gauge", "Validation metrics of the last epoch.",
                                             (*_TRAIN, "metric")),
}
_PIPELINE = [n for n in METRICS if not n.startswith("surveyproc_train_")]
_TRAINING = [n for n in METRICS if n.startswith("surveyproc_train_")]


class _ClientRecorder:
    """The ``http`` channel: prometheus-client series in a registry of their own (several
    runs in one process -- tests, notebooks -- never collide)."""

    def __init__(self, names: list[str]) -> None:
        self.registry = CollectorRegistry()
        types = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
        self._series: dict[str, Any] = {}
        for name in names:
            d = METRICS[name]
            extra = {"buckets": d.buckets} if d.kind == "histogram" else {}
            self._series[name] = types[d.kind](name, d.doc, list(d.labels),
                                               registry=self.registry, **extra)

    def touch(self, name: str, **labels: str) -> None:
        """Export a series at zero before anything happens (a run with no retries shows 0)."""
        self._series[name].labels(**labels)

    def record(self, name: str, value: float, **labels: str) -> None:
        series = self._series[name].labels(**labels)
        kind = METRICS[name].kind
        if kind == "counter":
            series.inc(value)
        elif kind == "gauge":
            series.set(value)
        else:
            series.observe(value)


class _RayRecorder:
    """The ``ray`` channel: ``ray.util.metrics`` in this process, exported by its node's
    metrics agent.  Series are made on first use (an actor makes only what it records).

    Ray exports a gauge only in the report interval it was set in, so the gauges'
    last values are set again every second by a daemon thread while this process
    lives: a gauge then reads as a Prometheus gauge does, until its process ends.
    """

    REFRESH_SECONDS = 1.0

    def __init__(self) -> None:
        self._series: dict[str, Any] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()
        self._refresher: threading.Thread | None = None

    def _make(self, name: str) -> Any:
        from ray.util import metrics

        d = METRICS[name]
        if d.kind == "counter":  # Ray exports counters under the name it is given
            return metrics.Counter(f"{name}_total", description=d.doc, tag_keys=d.labels)
        if d.kind == "gauge":
            return metrics.Gauge(name, description=d.doc, tag_keys=d.labels)
        return metrics.Histogram(name, description=d.doc, boundaries=list(d.buckets),
                                 tag_keys=d.labels)

    def record(self, name: str, value: float, **labels: str) -> None:
        if name not in self._series:
            self._series[name] = self._make(name)
        series, kind = self._series[name], METRICS[name].kind
        if kind == "counter":
            if value > 0:  # Ray refuses zero increments
                series.inc(value, tags=labels)
        elif kind == "gauge":
            series.set(value, tags=labels)
            with self._lock:
                self._gauges[(name, tuple(sorted(labels.items())))] = value
            self._start_refresher()
        else:
            series.observe(value, tags=labels)

    def _start_refresher(self) -> None:
        if self._refresher is None:
            self._refresher = threading.Thread(target=self._refresh, daemon=True,
                                               name="surveyproc-metrics-refresh")
            self._refresher.start()

    def _refresh(self) -> None:
        while True:
            time.sleep(self.REFRESH_SECONDS)
            with self._lock:
                gauges = list(self._gauges.items())
            for (name, labels), value in gauges:
                self._series[name].set(value, tags=dict(labels))


def recorder(channel: Channel, names: list[str] | None = None) -> Any:
    """A recorder for ``channel``: ``http`` registers ``names`` (default: every series) up
    front; ``ray`` makes each series on its first use."""
    chosen = names if names is not None else list(METRICS)
    return _ClientRecorder(chosen) if channel == "http" else _RayRecorder()


class PipelineMetrics:
    """The metrics of one inference run, in one process (the driver, or an actor on the
    ``ray`` channel)."""

    def __init__(self, job: str, channel: Channel = "http") -> None:
        self.job = job
        self.channel = channel
        self._rec = recorder(channel, _PIPELINE)
        if isinstance(self._rec, _ClientRecorder):
            ProcessCollector(registry=self._rec.registry, namespace="surveyproc_driver")
            for name in ("surveyproc_shard_retries", "surveyproc_shards_committed"):
                self._rec.touch(name, job_name=job)

    @property
    def registry(self) -> CollectorRegistry | None:
        """The prometheus-client registry (``http`` channel), else None."""
        return self._rec.registry if isinstance(self._rec, _ClientRecorder) else None

    def _record(self, name: str, value: float, **labels: str) -> None:
        self._rec.record(name, value, job_name=self.job, **labels)

    # -- driver ------------------------------------------------------------------------

    def planned(self, objects: int) -> None:
        self._record("surveyproc_objects_planned", objects)

    def in_flight(self, shards: int) -> None:
        self._record("surveyproc_inflight_shards", shards)

    def retry(self) -> None:
        self._record("surveyproc_shard_retries", 1)

    def committed(self, cutouts_per_second: float) -> None:
        """A shard was committed; the run's mean rate so far."""
        self._record("surveyproc_shards_committed", 1)
        self._record("surveyproc_cutouts_per_second", cutouts_per_second)

    # -- what a shard cost: the actor (ray channel) or the driver (http) ---------------

    def storage_retries(self, counts: dict[str, int], node: str = "driver") -> None:
        """Account for storage retries (per operation) made by an actor or the driver."""
        for operation, n in counts.items():
            self._record("surveyproc_storage_retries", n, node=node, operation=operation)

    def record_shard(self, report: ShardReport) -> None:
        """Account for one finished shard's report."""
        node = {"node": report.node or "local"}
        self._record("surveyproc_cutouts_processed", report.rows, **node)
        self._record("surveyproc_bytes_read", report.bytes_read, **node)
        self._record("surveyproc_batches", report.batches, **node)
        self._record("surveyproc_failed_objects", report.failed_objects, **node)
        self.storage_retries(report.io_retries, node["node"])
        if report.quarantined_objects:
            self._record("surveyproc_quarantined_objects", report.quarantined_objects, **node)
        for stage, latencies in (("read", report.read_seconds), ("model", report.model_seconds)):
            for seconds in latencies:
                self._record("surveyproc_stage_seconds", seconds, stage=stage)
        self._record("surveyproc_stage_seconds", report.write_seconds, stage="write")
        for stage, seconds in report.stages.items():
            self._record("surveyproc_actor_stage_seconds", seconds, stage=stage, **node)
        if report.wall_seconds > 0:
            self._record("surveyproc_actor_cpu_utilisation",
                         report.cpu_seconds / report.wall_seconds, **node)
        self._record("surveyproc_actor_memory_bytes", report.peak_rss_mb * 2**20, **node)
        self._record("surveyproc_actor_accelerator_memory_bytes",
                     report.accelerator_bytes, **node)
        for live in report.calibration:
            which = {"model": live.model, "target": live.target}
            self._record("surveyproc_calibration_objects", live.n, **which)
            for interval, count in (("0.68", live.cover68), ("0.95", live.cover95)):
                self._record("surveyproc_calibration_covered", count, interval=interval,
                             **which)
            for decile, count in enumerate(live.pit_counts, start=1):
                upper = decile / len(live.pit_counts)
                self._record("surveyproc_calibration_pit", count, pit_bin=f"{upper:.1f}",
                             **which)

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str | None]:
        """Expose ``/metrics`` on ``host:port`` (0: a free port) inside the block and yield
        its URL (the ``http`` channel); on the ``ray`` channel Ray's agents serve: None."""
        if not isinstance(self._rec, _ClientRecorder):
            log.info("metrics: through Ray's per-node metrics export")
            yield None
            return
        server, thread = start_http_server(port, addr=host, registry=self._rec.registry)
        url = f"http://{host}:{server.server_port}/metrics"
        log.info("metrics: %s", url)
        try:
            yield url
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


class TrainMetrics:
    """Training metrics of the workers of one model.

    On the ``http`` channel this runs as a small Ray actor serving ``/metrics``
    (``ray.remote(TrainMetrics).remote(job, model, "http", host, port)``; ``url()``
    says where) and workers report to it; on the ``ray`` channel each worker makes
    its own (``TrainMetrics(job, model, "ray")``) and Ray's node agent exports it.
    """

    def __init__(self, job: str, model: str, channel: Channel = "http",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.job, self.model = job, model
        self._rec = recorder(channel, _TRAINING)
        self.address: str | None = None
        if isinstance(self._rec, _ClientRecorder):
            self.server, self.thread = start_http_server(port, addr=host,
                                                         registry=self._rec.registry)
            self.address = f"http://{host}:{self.server.server_port}/metrics"

    def url(self) -> str | None:
        return self.address

    def record(self, rank: int, values: dict[str, Any]) -> None:
        """Set the gauges of worker ``rank`` from an epoch's (or a step's) values."""
        labels = {"job_name": self.job, "model": self.model, "rank": str(rank)}
        gauges = {"epoch": "surveyproc_train_epoch", "train_loss": "surveyproc_train_loss",
                  "val_loss": "surveyproc_train_val_loss",
                  "samples_per_s": "surveyproc_train_samples_per_second"}
        for key, name in gauges.items():
            if key in values:
                self._rec.record(name, float(values[key]), **labels)
        for key, value in values.items():
            if key.startswith("val_") and key != "val_loss":
                self._rec.record("surveyproc_train_val_metric", float(value), metric=key[4:],
                                 **labels)

    def stop(self) -> None:
        if self.address is not None:
            self.server.shutdown()
            self.server.server_close()
