"""The Grafana dashboard of surveyproc runs, generated from code.

Written as plain Python building Grafana's dashboard JSON (schema 39) rather
than with ``grafana-foundation-sdk``: the panels are a dozen time series and
stats, the JSON is stable, and one more dependency would buy nothing here.  The
committed ``deploy/grafana/surveyproc-dashboard.json`` is this module's output
(``python -m surveyproc.ops.dashboard > deploy/grafana/surveyproc-dashboard.json``);
a test checks they agree, and an integration test evaluates every expression
against a real Prometheus scraping a real run.

Series come from either metrics channel (:mod:`surveyproc.ops.metrics`), so
every expression sums over nodes and workers; ``ray_node_*`` series are Ray's
own per-node export.  ``$job`` selects runs (job_name), ``$datasource`` the
Prometheus.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dashboard", "panel_expressions"]

J = 'job_name=~"$job"'
RATE = "$__rate_interval"
#: The window of the live calibration panels: the calibration-drift alert's.
CAL_WINDOW = "30m"


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": ref}


def _panel(title: str, kind: str, targets: list[tuple[str, str]], grid: tuple[int, int, int, int],
           unit: str = "short", description: str = "") -> dict[str, Any]:
    x, y, w, h = grid
    return {"type": kind, "title": title, "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [_target(expr, legend, chr(ord("A") + i))
                        for i, (expr, legend) in enumerate(targets)]}


def _cal(interval: str, window: str) -> str:
    return (f'sum by (job_name, model, target) (increase(surveyproc_calibration_covered_total'
            f'{{{J},interval="{interval}"}}[{window}]))'
            f" / sum by (job_name, model, target) (increase(surveyproc_calibration_objects_total"
            f"{{{J}}}[{window}]))")


def _panels() -> list[dict[str, Any]]:
    done = f"sum by (job_name) (surveyproc_cutouts_processed_total{{{J}}})"
    planned = f"max by (job_name) (surveyproc_objects_planned{{{J}}})"
    latency = f"sum by (stage, le) (rate(surveyproc_stage_seconds_bucket{{{J}}}[{RATE}]))"
    return [
        _panel("Cutouts per second", "timeseries", [
            (f"sum by (job_name) (rate(surveyproc_cutouts_processed_total{{{J}}}[{RATE}]))",
             "{{job_name}}"),
            (f"max by (job_name) (surveyproc_cutouts_per_second{{{J}}})",
             "{{job_name}} mean since start")], (0, 0, 12, 8), "ops",
            "Committed cutouts per second, all nodes."),
        _panel("Cutouts per second by node", "timeseries", [
            (f"sum by (node) (rate(surveyproc_cutouts_processed_total{{{J}}}[{RATE}]))",
             "{{node}}")], (12, 0, 12, 8), "ops", "Ray node id of the actors doing the work."),
        _panel("Objects done", "stat", [(done, "done {{job_name}}"),
                                         (planned, "planned {{job_name}}")], (0, 8, 6, 5)),
        _panel("Done", "gauge", [(f"{done} / on (job_name) {planned}", "{{job_name}}")],
               (6, 8, 6, 5), "percentunit"),
        _panel("Time left (ETA)", "stat", [
            (f"({planned} - on (job_name) {done}) / on (job_name) "
             f"sum by (job_name) (rate(surveyproc_cutouts_processed_total{{{J}}}[10m]))",
             "{{job_name}}")], (12, 8, 6, 5), "s",
            "Objects left over the last 10 minutes' rate."),
        _panel("Shards in flight", "timeseries", [
            (f"sum by (job_name) (surveyproc_inflight_shards{{{J}}})", "{{job_name}}")],
            (18, 8, 6, 5)),
        _panel("Retries and failed objects", "timeseries", [
            (f"sum by (job_name) (increase(surveyproc_shard_retries_total{{{J}}}[{RATE}]))",
             "shard retries {{job_name}}"),
            (f"sum by (job_name) (increase(surveyproc_failed_objects_total{{{J}}}[{RATE}]))",
             "failed objects {{job_name}}"),
            (f"sum by (job_name, operation) (increase(surveyproc_storage_retries_total{{{J}}}"
             f"[{RATE}]))", "storage {{operation}} retries {{job_name}}"),
            (f"sum by (job_name) (increase(surveyproc_quarantined_objects_total{{{J}}}"
             f"[{RATE}]))", "quarantined objects {{job_name}}")], (0, 13, 12, 8), "short",
            "Shards handed out again; objects flagged for unusable pixels; storage operations "
            "retried after transient errors; objects of chunks that stayed unreadable."),
        _panel("Stage latency (median, 95th percentile)", "timeseries", [
            (f"histogram_quantile(0.5, {latency})", "{{stage}} p50"),
            (f"histogram_quantile(0.95, {latency})", "{{stage}} p95")], (12, 13, 12, 8), "s",
            "Seconds per batch (read: waiting on the store, model) or per shard part "
            "(write)."),
        _panel("CPU utilisation", "timeseries", [
            (f"max by (node) (surveyproc_actor_cpu_utilisation{{{J}}})", "actor {{node}}"),
            ("avg by (instance) (ray_node_cpu_utilization)", "node {{instance}}")],
            (0, 21, 8, 8), "percentunit",
            "Actor: CPU seconds per wall second of its last shard (1 = one core). Node: "
            "Ray's per-node export."),
        _panel("GPU utilisation", "timeseries", [
            ("avg by (instance, GpuIndex) (ray_node_gpus_utilization)",
             "{{instance}} GPU {{GpuIndex}}")], (8, 21, 8, 8), "percent",
            "Ray's per-node export; empty on CPU-only clusters."),
        _panel("Memory", "timeseries", [
            (f"max by (node) (surveyproc_actor_memory_bytes{{{J}}})", "actor RSS {{node}}"),
            (f"max by (node) (surveyproc_actor_accelerator_memory_bytes{{{J}}})",
             "actor GPU {{node}}"),
            ("sum by (instance) (ray_node_mem_used)", "node {{instance}}")], (16, 21, 8, 8),
            "bytes", "Peak resident and GPU memory of the actors; node memory in use."),
        _panel("Training samples per second", "timeseries", [
            (f"sum by (model) (surveyproc_train_samples_per_second{{{J}}})", "{{model}}")],
            (0, 29, 12, 8), "ops", "Ray Train workers, summed over ranks."),
        _panel("Training loss per epoch", "timeseries", [
            (f"max by (model) (surveyproc_train_loss{{{J}}})", "{{model}} train"),
            (f"max by (model) (surveyproc_train_val_loss{{{J}}})", "{{model}} validation")],
            (12, 29, 12, 8)),
        _panel("Live calibration: coverage of the central intervals", "timeseries", [
            (_cal("0.68", CAL_WINDOW), "{{model}} {{target}} 68 %"),
            (_cal("0.95", CAL_WINDOW), "{{model}} {{target}} 95 %")], (0, 37, 12, 8),
            "percentunit",
            "Share of labelled objects (a spectroscopic subset) whose true value lies in the "
            "PDF's 68 % / 95 % interval over the last 30 minutes; nominal 0.68 / 0.95. The "
            "calibration-drift alert fires 0.10 / 0.05 away."),
        _panel("Live calibration: PIT histogram (whole run)", "bargauge", [
            (f"sum by (model, target, pit_bin) (surveyproc_calibration_pit_total{{{J}}}) / "
             f"ignoring (pit_bin) group_left sum by (model, target) "
             f"(surveyproc_calibration_pit_total{{{J}}})", "{{model}} {{target}} ≤{{pit_bin}}")],
            (12, 37, 12, 8), "percentunit",
            "Share of labelled objects per PIT decile; flat at 0.1 when calibrated, U-shaped "
            "when over-confident, peaked when under-confident."),
        _panel("Where actor time goes", "timeseries", [
            (f"sum by (stage) (rate(surveyproc_actor_stage_seconds_total{{{J}}}[{RATE}]))",
             "{{stage}}")], (0, 45, 24, 8), "s",
            "Seconds per second in each stage of the actor loop, all actors. forward is the "
            "models; read and checks run on reader threads beside them; a growing wait "
            "means the models wait for the store (raise prefetch, or more bandwidth)."),
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard as Grafana's JSON model."""
    return {
        "title": "surveyproc runs", "uid": "surveyproc-runs", "schemaVersion": 39,
        "tags": ["surveyproc", "ray"], "timezone": "utc", "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "editable": True,
        "description": "Throughput, progress, faults, latency, resources, training and live "
                       "calibration of surveyproc runs (surveyproc/ops/dashboard.py).",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus"},
            {"name": "job", "type": "query", "label": "run (job_name)", "includeAll": True,
             "multi": True, "allValue": ".*", "refresh": 2,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(surveyproc_objects_planned, job_name)",
                       "refId": "job"},
             "definition": "label_values(surveyproc_objects_planned, job_name)"}]},
        "panels": [{**panel, "id": i + 1} for i, panel in enumerate(_panels())],
    }


def panel_expressions(board: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of ``board`` (default: :func:`dashboard`)."""
    board = board or dashboard()
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


if __name__ == "__main__":
    print(json.dumps(dashboard(), indent=2, ensure_ascii=False))
