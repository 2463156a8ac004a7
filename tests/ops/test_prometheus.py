"""The metrics exporter, scraped by a real Prometheus server on 127.0.0.1."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from surveyproc.infer.shard import ShardReport
from surveyproc.ops.metrics import PipelineMetrics
from tests.support.servers import free_port, prometheus_server, require_program

pytestmark = pytest.mark.slow


def _query(url: str, expression: str) -> list[dict]:
    query = urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as response:
        return json.loads(response.read())["data"]["result"]


def test_a_real_prometheus_scrapes_the_pipeline_metrics(tmp_path):
    metrics = PipelineMetrics("scraped")
    port = free_port()
    report = ShardReport(index=0, rows=512, bytes_read=2**20, batches=2, failed_objects=1,
                         read_seconds=[0.01, 0.02], model_seconds=[0.5, 0.6],
                         write_seconds=0.05, wall_seconds=1.2, cpu_seconds=2.0)
    with metrics.serve("127.0.0.1", port), \
            prometheus_server([f"127.0.0.1:{port}"], str(tmp_path / "prom")) as url:
        require_program("prometheus (apt-get install prometheus)", url is not None)
        metrics.planned(1024)
        metrics.record_shard(report)
        metrics.record_shard(report)
        deadline = time.monotonic() + 30
        found: list[dict] = []
        while time.monotonic() < deadline and not found:
            found = _query(url, 'surveyproc_cutouts_processed_total{job_name="scraped"}')
            time.sleep(0.5)
        assert found, "Prometheus never scraped the exporter"
        assert float(found[0]["value"][1]) == 1024
        assert float(_query(url, "surveyproc_objects_planned")[0]["value"][1]) == 1024
        count = _query(url, 'surveyproc_stage_seconds_count{stage="model"}')
        assert float(count[0]["value"][1]) == 4
        assert float(_query(url, "surveyproc_failed_objects_total")[0]["value"][1]) == 2
