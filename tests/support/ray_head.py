"""A real Ray head for tests: ``ray start --head --block`` with token authentication, its own
temp dir and free ports, the dashboard (Jobs API) and metrics export on 127.0.0.1.

The head runs in its own process group; it is stopped by signalling its own
``ray start`` PID (which shuts its Ray processes down) and then killing whatever
is left of that group -- never ``ray stop``, which would stop every Ray on the
machine (the test session's own included).

Ray resolves ``127.0.0.1`` to the node's address for its internal services (GCS,
raylet), which is a property of Ray; the HTTP endpoints a user reaches -- the
Jobs API and the metrics export -- bind where they are told.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .servers import free_port

__all__ = ["RayHead", "ray_head"]


@dataclass(frozen=True)
class RayHead:
    """Where a test's Ray head answers."""

    address: str          # Jobs API, http://127.0.0.1:PORT
    metrics: str          # host:port of Ray's per-node metrics export
    token: str
    pid: int
    temp_dir: str


def _ray_program() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def _wait_until_up(url: str, token: str, process: subprocess.Popen, timeout: float) -> None:
    request = urllib.request.Request(f"{url}/api/version",
                                     headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:  # refused, or HTTP errors while the dashboard starts
            if process.poll() is not None or time.monotonic() > deadline:
                msg = f"the Ray head did not start (Jobs API {url})"
                raise RuntimeError(msg) from None
            time.sleep(0.3)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to our ``ray start``, then SIGKILL to what is left of its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=45)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, env: dict[str, str] | None = None,
             timeout: float = 90.0) -> Iterator[RayHead]:
    """Start a Ray head with a fresh random token; yield where it answers; stop it by PID.

    ``env`` adds variables to the head's environment (its jobs inherit them, as
    pods inherit a Secret's variables on a cluster).  Metrics are reported every
    second (Ray's default is 10 s) so a test need not wait long for a scrape.
    """
    token = secrets.token_hex(24)
    temp_dir = tempfile.mkdtemp(prefix="surveyproc-rayhead-")
    dashboard, metrics = free_port(), free_port()
    command = [_ray_program(), "start", "--head", "--block", f"--port={free_port()}",
               "--node-ip-address=127.0.0.1", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
               f"--ray-client-server-port={free_port()}", f"--metrics-export-port={metrics}",
               # Ray's fixed default agent ports would clash with another Ray on the
               # machine (the test session's own): the head's job agent would not start
               f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}",
               f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    head_env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_metrics_report_interval_ms": "1000"}
    head_env.pop("RAY_ADDRESS", None)
    # this interpreter is the head's "image": jobs' ``python`` must be it
    head_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{head_env.get('PATH', '')}"
    with open(Path(temp_dir) / "ray-start.log", "wb") as log:
        process = subprocess.Popen(command, env=head_env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_until_up(url, token, process, timeout)
        yield RayHead(url, f"127.0.0.1:{metrics}", token, process.pid, temp_dir)
    finally:
        _stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)
