"""Faults a survey run meets, on a real local Ray and a loopback S3 server behind a fault proxy.

Every test checks the promise: the finished catalog holds every object exactly
once, objects whose pixels could not be read are written flagged (never
dropped), and everything else equals a clean run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from surveyproc.catalog import read_catalog
from surveyproc.flags import Flag
from surveyproc.infer import run_inference
from surveyproc.jobs import JobSpec
from surveyproc.models import save_checkpoint
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.testing import seeded_checkpoint
from tests.support.fault_proxy import FaultRates, fault_proxy

pytestmark = [pytest.mark.ray_cluster, pytest.mark.slow, pytest.mark.timeout(300)]

N, CHUNK, PER_SHARD = 1200, 100, 300
CONFIG = SynthConfig(n=N, size=16, seed=11)
BROKEN = 3  # the image chunk made unreadable: objects 300-400
#: a client with no retries of its own, so every injected fault reaches surveyproc's
NO_CLIENT_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1}}}


def _job(store_url: str, out: str, options: dict | None = None, **infer) -> JobSpec:
    return JobSpec.model_validate({
        "name": "faults",
        "store": {"url": store_url, "storage_options": options or {}},
        "output": {"dir": out, "storage_options": options or {}},
        "resources": {"actors": 2, "cpus_per_actor": 0.5, "batch_size": 100},
        "models": [{"name": "sf", "kind": "sfnet", "k": 3, "width": 8,
                    "targets": ["metallicity"]}],
        "infer": {"objects_per_shard": PER_SHARD, **infer},
        "metrics": {"enabled": False},
    })


@pytest.fixture(scope="module")
def clean(tmp_path_factory, ray_session):
    """A local store, its checkpoint, and the catalog of a run without faults."""
    root = tmp_path_factory.mktemp("faults")
    store = synthesize(str(root / "survey.zarr"), CONFIG, chunk_objects=CHUNK)
    checkpoint = seeded_checkpoint(store, "sfnet", ["metallicity"], k=3, seed=1)
    save_checkpoint(checkpoint, str(root / "out/checkpoints/sf.pt"))
    result = run_inference(_job(store.url, str(root / "out")), store)
    assert result.complete
    return root, checkpoint, read_catalog(str(root / "out/catalog"))


def _assert_exactly_once_and_clean(table, reference, quarantined=()):
    ids = table.column("object_id").to_numpy()
    assert len(ids) == N and (np.sort(ids) == np.arange(N)).all()
    flags = table.column("flags").to_numpy()
    bad = np.zeros(N, dtype=bool)
    for start, stop in quarantined:
        bad[start:stop] = True
    assert ((flags & Flag.UNREADABLE) != 0).tolist() == bad.tolist()
    assert np.isnan(table.column("metallicity_mean").to_numpy()[bad]).all()
    keep = np.flatnonzero(~bad)
    for name in reference.column_names:
        if name != "run_id":
            assert table.column(name).take(keep).equals(reference.column(name).take(keep)), name


def _corrupt_chunk(store_dir: Path, chunk: int) -> None:
    """Overwrite one image chunk with bytes that do not decode."""
    files = [p for p in (store_dir / "images" / "c" / str(chunk)).rglob("*") if p.is_file()]
    assert files, "no chunk file to corrupt"
    for path in files:
        path.write_bytes(b"not a compressed chunk" * 7)


def test_a_corrupt_chunk_is_quarantined_and_the_rest_completes(clean):
    root, _, reference = clean
    broken = root / "broken.zarr"
    shutil.copytree(root / "survey.zarr", broken)
    _corrupt_chunk(broken, BROKEN)
    job = _job(str(broken), str(root / "out"), catalog=str(root / "quarantined"))
    result = run_inference(job, open_store(str(broken)))
    assert result.complete and result.quarantined_objects == CHUNK
    assert result.quarantined == ["objects 300-400: RuntimeError: error during blosc "
                                  "decompression: -1"]
    _assert_exactly_once_and_clean(read_catalog(str(root / "quarantined")), reference,
                                   [(BROKEN * CHUNK, (BROKEN + 1) * CHUNK)])


def test_transient_object_store_errors_are_retried_and_counted(clean, s3_endpoint, s3_bucket):
    """5xx answers, slow answers and connection resets on 8 % of requests, and one chunk
    that answers 500 every time: the run completes, the chunk's objects are flagged."""
    _, checkpoint, reference = clean
    bucket, _ = s3_bucket
    with fault_proxy(s3_endpoint, FaultRates(error=0.04, reset=0.02, slow=0.02,
                                             slow_seconds=0.3), seed=7) as proxy:
        options = {"endpoint_url": proxy.endpoint, **NO_CLIENT_RETRIES}
        with proxy.paused():
            synthesize(f"{bucket}/survey.zarr", CONFIG, chunk_objects=CHUNK,
                       storage_options=options)
            save_checkpoint(checkpoint, f"{bucket}/out/checkpoints/sf.pt", options)
        proxy.broken.add(f"/survey.zarr/images/c/{BROKEN}/")
        job = _job(f"{bucket}/survey.zarr", f"{bucket}/out", options)
        result = run_inference(job, open_store(job.store.url, options))
        assert result.complete
        with proxy.paused():
            table = read_catalog(f"{bucket}/out/catalog", options)
    assert sum(proxy.faults[k] for k in ("error", "reset", "slow")) >= 10, proxy.faults
    assert sum(result.storage_retries.values()) >= 3, (result.storage_retries, proxy.faults)
    assert result.quarantined_objects == CHUNK
    _assert_exactly_once_and_clean(table, reference, [(BROKEN * CHUNK, (BROKEN + 1) * CHUNK)])


def _settled_commits(catalog: Path, quiet: float = 3.0, timeout: float = 60.0) -> set[int]:
    """The shards committed once the killed driver's actor is gone: its shards in flight
    (two, worked on at once) may still commit until Ray, seeing their owner dead, kills it;
    alive, it would commit a shard every few milliseconds, so a quiet spell means gone."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        now = {json.loads(p.read_text())["index"]
               for p in (catalog / "_committed").glob("shard-*.json")}
        if now != seen:
            seen, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"commits still changing after {timeout} s: {sorted(seen)}")


def test_a_killed_driver_resumes_without_redoing_committed_shards(clean, ray_session):
    """``surveyproc infer`` killed with SIGKILL mid-run, then run again: the second run does
    only the shards the first did not commit, and the catalog equals a clean run's."""
    root, _, reference = clean
    catalog = root / "driver-killed"
    spec = _job(str(root / "survey.zarr"), str(root / "out"), catalog=str(catalog),
                objects_per_shard=100).model_dump(mode="json")
    spec["ray"] = {"address": ray_session.get_runtime_context().gcs_address}
    spec["resources"]["actors"] = 1
    job_file = root / "driver-killed.yaml"
    job_file.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "surveyproc", "infer", str(job_file)]
    env = {**os.environ, "SURVEYPROC_PROGRESS": "0"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    committed: list[Path] = []
    while time.monotonic() < deadline and driver.poll() is None:
        committed = list((catalog / "_committed").glob("shard-*.json")) if catalog.exists() else []
        if len(committed) >= 2:
            os.kill(driver.pid, signal.SIGKILL)  # this test's own driver, by its PID
            break
        time.sleep(0.05)
    driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL, "the driver finished before it could be killed"
    before = _settled_commits(catalog)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240,
                           check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    counts = re.search(r"in (\d+) shards, (\d+) shards already committed", again.stdout)
    assert counts is not None, again.stdout
    run, skipped = int(counts[1]), int(counts[2])
    assert skipped == len(before) >= 2 and run == N // 100 - len(before)
    _assert_exactly_once_and_clean(read_catalog(str(catalog)), reference)
