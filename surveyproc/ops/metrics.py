"""Prometheus metrics of a running job, served on ``/metrics`` while it runs.

The driver owns the exporter: actors measure their own work (read, model,
write seconds, bytes, CPU time) and send it back with each finished shard,
so there is one scrape target per job however many actors run, and nothing
to discover on the cluster.  Names follow DESIGN.md (``surveyproc_`` prefix);
every series carries the job name as the label ``job_name`` (Prometheus
keeps ``job`` for the scrape job).  Each run has its own registry,
so several runs in one process (tests, notebooks) never collide.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:  # the driver hands over what the actors report
    from ..infer.shard import ShardReport

__all__ = ["PipelineMetrics", "TrainMetrics"]

log = logging.getLogger(__name__)

#: Seconds per batch and stage: 1 ms .. 1 min.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
STAGES = ("read", "model", "write")


class PipelineMetrics:
    """The metrics of one inference (or training) run."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry, namespace="surveyproc_driver")
        r, labels = self.registry, ["job_name"]

        def counter(name: str, doc: str) -> Any:
            return Counter(f"surveyproc_{name}", doc, labels, registry=r).labels(job)

        def gauge(name: str, doc: str) -> Any:
            return Gauge(f"surveyproc_{name}", doc, labels, registry=r).labels(job)

        self.cutouts = counter("cutouts_processed", "Cutouts inferred and committed.")
        self.bytes_read = counter("bytes_read", "Decompressed pixel bytes read from the store.")
        self.batches = counter("batches", "Model batches run.")
        self.shards = counter("shards_committed", "Shards whose catalog part is committed.")
        self.retries = counter("shard_retries", "Shards handed out again after a failure.")
        self.failed_objects = counter("failed_objects",
                                      "Objects flagged because their input was unusable.")
        self.in_flight = gauge("inflight_shards", "Shards handed to actors and not finished.")
        self.planned = gauge("objects_planned", "Objects this run has to process.")
        self.rate = gauge("cutouts_per_second", "Committed cutouts per second since start.")
        self.cpu = gauge("actor_cpu_utilisation",
                         "CPU seconds per wall second of the last shard's actor.")
        self.latency = Histogram("surveyproc_stage_seconds", "Seconds per batch (read, model) "
                                 "or per shard part (write).", ["job_name", "stage"], registry=r,
                                 buckets=LATENCY_BUCKETS)

    def record_shard(self, report: ShardReport) -> None:
        """Account for one committed shard's report."""
        self.cutouts.inc(report.rows)
        self.bytes_read.inc(report.bytes_read)
        self.batches.inc(report.batches)
        self.failed_objects.inc(report.failed_objects)
        self.shards.inc()
        for stage, latencies in (("read", report.read_seconds), ("model", report.model_seconds)):
            for seconds in latencies:
                self.latency.labels(self.job, stage).observe(seconds)
        self.latency.labels(self.job, "write").observe(report.write_seconds)
        if report.wall_seconds > 0:
            self.cpu.set(report.cpu_seconds / report.wall_seconds)

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Expose ``/metrics`` on ``host:port`` (0: a free port) inside the block; yield its URL."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        url = f"http://{host}:{server.server_port}/metrics"
        log.info("metrics: %s", url)
        try:
            yield url
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


class TrainMetrics:
    """Training metrics per worker, served on ``/metrics`` from a small Ray actor.

    Ray Train workers report to this actor after every epoch (and their running
    samples/s every few steps); it runs the exporter, so there is one scrape
    target for the whole training run wherever the workers are.  Create it with
    ``ray.remote(TrainMetrics).remote(job, host, port)``; ``url()`` says where.
    """

    def __init__(self, job: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.job = job
        self.registry = CollectorRegistry()
        labels = ["job_name", "rank"]
        r = self.registry
        self.epoch = Gauge("surveyproc_train_epoch", "Last finished epoch (1-based).", labels,
                           registry=r)
        self.train_loss = Gauge("surveyproc_train_loss", "Mean training loss of the last "
                                "epoch.", labels, registry=r)
        self.val_loss = Gauge("surveyproc_train_val_loss", "Validation loss of the last "
                              "epoch.", labels, registry=r)
        self.samples = Gauge("surveyproc_train_samples_per_second", "Training samples per "
                             "second of this worker.", labels, registry=r)
        self.val_metric = Gauge("surveyproc_train_val_metric", "Validation metrics of the "
                                "last epoch.", [*labels, "metric"], registry=r)
        self.server, self.thread = start_http_server(port, addr=host, registry=r)
        self.address = f"http://{host}:{self.server.server_port}/metrics"

    def url(self) -> str:
        return self.address

    def record(self, rank: int, values: dict[str, Any]) -> None:
        """Set the gauges of worker ``rank`` from an epoch's (or a step's) values."""
        rank_label = str(rank)
        gauges = {"epoch": self.epoch, "train_loss": self.train_loss,
                  "val_loss": self.val_loss, "samples_per_s": self.samples}
        for key, gauge in gauges.items():
            if key in values:
                gauge.labels(self.job, rank_label).set(float(values[key]))
        for key, value in values.items():
            if key.startswith("val_") and key != "val_loss":
                self.val_metric.labels(self.job, rank_label, key[4:]).set(float(value))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
