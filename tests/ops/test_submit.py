"""``surveyproc submit|status|logs|stop|list`` against a real Ray head with token
authentication (``ray start --head`` on 127.0.0.1, its own temp dir and ports, stopped by
its own PID), driven as a user drives it: the command in its own process, the token in the
environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ray_head import RayHead, ray_head

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: Planted secrets: the head's jobs inherit the S3 key (as pods do from a Secret); the
#: client holds the Ray token.  Neither may show up anywhere a user or a scraper can read.
PLANTED_S3_SECRET = "planted-s3-secret-6f1d0c"


def _cli(*args: str, token: str | None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_API_SERVER"))}
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    env["HOME"] = str(ROOT / ".pytest_cache")  # no ~/.ray/auth_token of the user's
    return subprocess.run([sys.executable, "-m", "surveyproc", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def head():
    with ray_head(env={"AWS_SECRET_ACCESS_KEY": PLANTED_S3_SECRET}) as started:
        yield started


def _small_job(tmp_path: Path, *extra: str) -> list[str]:
    """The quickstart job, shrunk, with absolute paths (a submitted job's paths must be)."""
    return [str(ROOT / "jobs" / "quickstart.yaml"),
            "--set", f"store.url={tmp_path / 'survey.zarr'}",
            "--set", f"output.dir={tmp_path / 'out'}",
            "--set", "store.synth.n=96", "--set", "store.synth.size=16",
            "--set", "store.synth.chunk=32", "--set", "train.epochs=1",
            "--set", "train.batch_size=8", "--set", "resources.cpus_per_actor=0.5",
            *extra]


def _job_id(out: str) -> str:
    first = next(line for line in out.splitlines() if line.startswith("submitted "))
    return first.split()[1]


def test_submit_wait_runs_a_job_to_its_catalog(head: RayHead, tmp_path):
    done = _cli("submit", *_small_job(tmp_path), "--address", head.address, "--wait",
                token=head.token)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = _job_id(done.stdout)
    assert done.stdout.rstrip().endswith(f"{job_id}: SUCCEEDED")
    assert "catalog:" in done.stdout  # the job's own output, streamed while it ran
    assert list((tmp_path / "out" / "catalog").glob("part-*.parquet"))
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["catalog"]["complete"] and summary["catalog"]["objects_run"] == 96

    status = _cli("status", job_id, "--address", head.address, token=head.token)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout and "quickstart" in \
        status.stdout
    logs = _cli("logs", job_id, "--address", head.address, token=head.token)
    assert logs.returncode == 0 and "catalog:" in logs.stdout
    listing = _cli("list", "--address", head.address, token=head.token)
    assert job_id in listing.stdout

    # planted secrets: not in the logs, the job's record, or any file the run wrote
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.address,
                                 headers={"Authorization": f"Bearer {head.token}"})
    record = json.dumps(client.get_job_info(job_id).model_dump(), default=str)
    seen = [done.stdout, done.stderr, logs.stdout, listing.stdout, record]
    seen += [p.read_bytes().decode("latin-1") for p in (tmp_path / "out").rglob("*")
             if p.is_file()]
    for secret in (PLANTED_S3_SECRET, head.token):
        assert not [text[:200] for text in seen if secret in text]


def test_stop_ends_a_long_job(head: RayHead, tmp_path):
    started = _cli("submit", *_small_job(tmp_path, "--set", "train.epochs=10000",
                                          "--set", "train.patience=10000"),
                   "--address", head.address, token=head.token)
    assert started.returncode == 0, started.stderr
    job_id = _job_id(started.stdout)
    deadline = time.monotonic() + 120
    while "RUNNING" not in _cli("status", job_id, "--address", head.address,
                                token=head.token).stdout:
        assert time.monotonic() < deadline, "the job never started running"
        time.sleep(1)
    stopped = _cli("stop", job_id, "--address", head.address, "--wait", token=head.token)
    assert stopped.returncode == 0 and stopped.stdout.strip().endswith("now STOPPED"), \
        stopped.stdout + stopped.stderr


@pytest.mark.parametrize(("args", "token", "expected"), [
    (["status", "raysubmit_x"], "wrong-token", "refused the token (HTTP 403)"),
    (["status", "raysubmit_x"], None, "requires a token and none was found"),
    (["status", "raysubmit_absent"], "HEAD", "has no job 'raysubmit_absent'"),
    (["logs", "raysubmit_absent"], "HEAD", "has no job 'raysubmit_absent'"),
    (["stop", "raysubmit_absent"], "HEAD", "has no job 'raysubmit_absent'"),
    (["list"], "HEAD", None),
])
def test_refusals_are_one_line_with_exit_2(head: RayHead, args, token, expected):
    done = _cli(*args, "--address", head.address,
                token=head.token if token == "HEAD" else token, timeout=60)
    if expected is None:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert head.token not in done.stderr


@pytest.mark.parametrize(("address", "expected"), [
    ("http://127.0.0.1:1", "cannot reach the Ray cluster at http://127.0.0.1:1"),
    ("ftp://head:8265", "is not http(s)://HOST:PORT"),
    ("http://user:pw@head:8265", "is not http(s)://HOST:PORT"),
    ("head:8265", "is not http(s)://HOST:PORT"),
])
def test_bad_addresses_are_one_line_with_exit_2(address, expected):
    done = _cli("list", "--address", address, token="t", timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, \
        done.stderr


def test_a_relative_path_is_refused_before_connecting(tmp_path):
    done = _cli("submit", str(ROOT / "jobs" / "quickstart.yaml"), "--address",
                "http://127.0.0.1:1", token="t", timeout=60)
    assert done.returncode == 2 and "store.url 'work/quickstart/survey.zarr' is a relative " \
        "path" in done.stderr
