"""The cluster's metrics channel end to end: a job submitted to a real Ray head with
``metrics.export: ray``, its actors and Ray Train workers exporting through Ray's per-node
metrics export, scraped by a real Prometheus with the PodMonitor's own relabelling; every
dashboard and alert-rule expression answers from Prometheus's HTTP API, the live
calibration series agree with the report's coverage, and no secret is in any label."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from surveyproc.jobs import load_job
from surveyproc.ops.dashboard import dashboard, panel_expressions
from surveyproc.ops.submit import ClusterJobs
from tests.deploy.test_alert_rules import served_series
from tests.support.ray_head import ray_head
from tests.support.servers import prometheus_server, require_program

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLANTED_S3_SECRET = "planted-s3-secret-metrics-41ac"
#: Series that exist only once something goes wrong (shown by promtool unit tests on
#: synthetic series) or only on GPU nodes; a healthy CPU run cannot make them.
ONLY_ON_FAULTS = {"surveyproc_shard_retries_total", "surveyproc_failed_objects_total",
                  "surveyproc_storage_retries_total", "surveyproc_quarantined_objects_total"}
ONLY_ON_GPUS = {"ray_node_gpus_utilization"}


def _camel_to_snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def podmonitor_relabelling() -> list[dict]:
    """The PodMonitor's metricRelabelings for Ray's port, as Prometheus configuration."""
    monitor = yaml.safe_load((ROOT / "deploy" / "podmonitor.yaml").read_text())
    endpoint = next(e for e in monitor["spec"]["podMetricsEndpoints"] if e["port"] == "metrics")
    return [{_camel_to_snake(k): v for k, v in rule.items()}
            for rule in endpoint["metricRelabelings"]]


def _api(url: str, path: str, **params: str) -> dict:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]


def _range(url: str, expr: str, start: float, end: float) -> list[dict]:
    concrete = expr.replace("$__rate_interval", "1m").replace('"$job"', '".*"')
    return _api(url, "query_range", query=concrete, start=f"{start:.3f}", end=f"{end:.3f}",
                step="2s")["result"]


def _selectors(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:surveyproc|ray)_[a-z_]+)\b", expr))


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory):
    """A small job run on a Ray head (metrics.export: ray, Ray Train with one worker),
    scraped every second; yields (prometheus URL, start, end, output dir, raw scrape,
    the head's token)."""
    require_program("prometheus (apt-get install prometheus)",
                    shutil.which("prometheus") is not None)
    root = tmp_path_factory.mktemp("cluster-metrics")
    with ray_head(env={"AWS_SECRET_ACCESS_KEY": PLANTED_S3_SECRET}) as head, \
            prometheus_server([head.metrics], str(root / "prom"),
                              relabel=podmonitor_relabelling()) as prom:
        job = load_job(ROOT / "jobs" / "quickstart.yaml", [
            f"store.url={root / 'survey.zarr'}", f"output.dir={root / 'out'}",
            "store.synth.n=256", "store.synth.size=16", "store.synth.chunk=32",
            "train.epochs=3", "train.batch_size=32", "train.workers=1",
            "train.cpus_per_worker=1", "resources.cpus_per_actor=0.5",
            "infer.objects_per_shard=32", "metrics.export=ray"])
        os.environ["RAY_AUTH_TOKEN"] = head.token
        try:
            jobs = ClusterJobs(head.address)
            start = time.time()
            job_id = jobs.submit(job)
            state = jobs.wait(job_id, timeout=480)
            assert state.status == "SUCCEEDED", jobs.logs(job_id)[-4000:]
        finally:
            os.environ.pop("RAY_AUTH_TOKEN", None)
        # the last counters reach Prometheus within a report interval and a scrape
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = _api(prom, "query", query="sum(surveyproc_cutouts_processed_total)")["result"]
            if done and float(done[0]["value"][1]) == 256:
                break
            time.sleep(1)
        raw = urllib.request.urlopen(f"http://{head.metrics}/metrics", timeout=10).read().decode()
        yield prom, start, time.time(), root / "out", raw, head.token


def test_every_dashboard_expression_answers(scraped_run):
    prom, start, end, *_ = scraped_run
    empty = [(title, expr) for title, expr in panel_expressions()
             if not _selectors(expr) <= ONLY_ON_GPUS | ONLY_ON_FAULTS
             and not _range(prom, expr, start, end)]
    assert not empty, empty
    # the fault- and GPU-only series the dashboard uses are real surveyproc/Ray names
    used = set().union(*(_selectors(expr) for _, expr in panel_expressions()))
    assert served_series() >= ONLY_ON_FAULTS and used >= ONLY_ON_FAULTS | ONLY_ON_GPUS


def test_every_alert_expression_is_valid_and_its_series_exist(scraped_run):
    prom, start, end, *_ = scraped_run
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "surveyproc-rules.yaml")
                           .read_text())
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        _range(prom, rule["expr"], start, end)  # Prometheus accepts and evaluates it
        for name in _selectors(rule["expr"]) - ONLY_ON_FAULTS:
            assert _range(prom, name, start, end), (rule["alert"], name)


def test_live_calibration_matches_the_report(scraped_run):
    prom, _, _, out, *_ = scraped_run
    coverage = {}
    for interval in ("0.68", "0.95"):
        found = _api(prom, "query", query=(
            f'sum(surveyproc_calibration_covered_total{{interval="{interval}",model="photoz"}})'
            ' / sum(surveyproc_calibration_objects_total{model="photoz"})'))["result"]
        coverage[interval] = float(found[0]["value"][1])
    objects = _api(prom, "query", query='sum(surveyproc_calibration_objects_total)')["result"]
    pit = _api(prom, "query", query="sum(surveyproc_calibration_pit_total)")["result"]
    with open(out / "report" / "calibration_redshift.csv") as table:
        overall = next(row for row in csv.DictReader(table) if row["group"] == "all")
    assert float(objects[0]["value"][1]) == float(overall["n"]) == float(pit[0]["value"][1])
    assert coverage["0.68"] == pytest.approx(float(overall["coverage_68"]), abs=1e-9)
    assert coverage["0.95"] == pytest.approx(float(overall["coverage_95"]), abs=1e-9)


def test_series_are_per_node_not_per_object_and_hold_no_secret(scraped_run):
    prom, _, _, _, raw, token = scraped_run
    series = _api(prom, "series", **{"match[]": '{__name__=~"surveyproc_.*"}'})
    assert {s["__name__"] for s in series} >= {"surveyproc_cutouts_processed_total",
                                               "surveyproc_train_loss",
                                               "surveyproc_calibration_pit_total"}
    assert not {key for s in series for key in s} & {"object_id", "otel_scope_name"}
    labels = json.dumps(series)
    for text in (labels, raw):
        assert PLANTED_S3_SECRET not in text and token not in text


def test_the_committed_dashboard_is_the_generated_one():
    committed = json.loads((ROOT / "deploy" / "grafana" / "surveyproc-dashboard.json")
                           .read_text())
    assert committed == dashboard(), ("regenerate: python -m surveyproc.ops.dashboard > "
                                      "deploy/grafana/surveyproc-dashboard.json")
