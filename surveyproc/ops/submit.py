"""Run a job file on a remote Ray cluster through Ray's Job Submission API.

``surveyproc submit`` ships the validated job file and (by default) this
package as the job's runtime environment, so the cluster runs exactly the code
and settings the user checked here; the entrypoint is ``python -m surveyproc
run job.yaml`` and the driver joins the cluster it runs on (Ray sets
``RAY_ADDRESS`` for it).

Token authentication (on by default since Ray 2.5x): the cluster's token is
read like Ray reads it -- ``RAY_AUTH_TOKEN``, else the file named by
``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` -- and sent as an
``Authorization`` header.  It is never an argument (arguments show in process
lists and shell history), never logged, and never part of the job's metadata or
runtime environment.  Every failure a user can cause (a malformed address, an
unreachable head, a refused token, an unknown job id) is a
:class:`~surveyproc.errors.ClusterError`: one line, exit code 2.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ClusterError, JobSpecError
from ..fs import is_local, is_process_local
from ..jobs import JobSpec

__all__ = ["ClusterJobs", "JobState", "cluster_token", "portable_job_text"]

#: Ray's own variables for the token, in the order Ray reads them.
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = Path("~/.ray/auth_token")
#: Where a job's driver finds the shipped job file (relative to its working directory).
SHIPPED_JOB = "job.yaml"
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")
#: Job-file fields holding paths or URLs the cluster must be able to reach.
_LOCATIONS = (("store", "url"), ("output", "dir"), ("infer", "catalog"))


def cluster_token() -> str | None:
    """The cluster's token from the environment or its file, or None when there is none."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = Path(os.environ.get(TOKEN_PATH_ENV) or DEFAULT_TOKEN_PATH).expanduser()
    try:
        return path.read_text().strip() or None
    except OSError:
        if os.environ.get(TOKEN_PATH_ENV):
            msg = f"{TOKEN_PATH_ENV} names {path}, which cannot be read"
            raise ClusterError(msg) from None
        return None


def check_address(address: str | None) -> str:
    """``http(s)://host[:port]`` of a Ray dashboard (Jobs API), or one line saying why not."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address:
        msg = ("no cluster address: give --address http://HEAD:8265 (the Ray dashboard's "
               "Jobs API) or set RAY_API_SERVER_ADDRESS")
        raise ClusterError(msg)
    parts = urllib.parse.urlsplit(address)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
            or parts.username or parts.path not in ("", "/"):
        msg = (f"cluster address {address!r} is not http(s)://HOST:PORT (the Ray dashboard's "
               "Jobs API, e.g. http://raycluster-head-svc:8265)")
        raise ClusterError(msg)
    return address.rstrip("/")


def portable_job_text(job: JobSpec) -> str:
    """The job file as shipped: validated, overrides applied, joining the cluster it runs
    on; a relative path (which would resolve inside the job's working directory on the
    cluster) is refused with the field named."""
    tree = job.model_dump(mode="json", exclude_unset=True)
    for section, key in _LOCATIONS:
        value = (tree.get(section) or {}).get(key)
        if value and is_process_local(value):
            msg = (f"job {job.name}: {section}.{key} {value!r} is in this process's memory, "
                   "which a cluster cannot see; use a URL (s3://bucket/...)")
            raise JobSpecError(msg)
        if value and is_local(value) and not value.startswith("file://") \
                and not Path(value).is_absolute():
            msg = (f"job {job.name}: {section}.{key} {value!r} is a relative path, which would "
                   "resolve inside the job's working directory on the cluster; use a URL "
                   "(s3://bucket/...) or an absolute path the cluster's nodes can read")
            raise JobSpecError(msg)
    tree.setdefault("ray", {})
    tree["ray"].pop("num_cpus", None)  # a driver joining a cluster cannot size it
    tree["ray"]["address"] = None  # the driver joins via RAY_ADDRESS, set by Ray
    return yaml.safe_dump(tree, sort_keys=False)


@dataclass(frozen=True)
class JobState:
    """What ``status`` and ``list`` show of one job."""

    job_id: str
    status: str
    name: str
    message: str
    start_time: float | None  # seconds since the epoch
    end_time: float | None

    def line(self) -> str:
        started = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start_time))
                   if self.start_time else "-")
        tail = f"  {self.message}" if self.message and self.status != "RUNNING" else ""
        return f"{self.job_id}  {self.status:9s}  {self.name or '-':20s}  {started}{tail}"


def _state(info: Any) -> JobState:
    status = getattr(info.status, "value", str(info.status))
    def millis(t):
        return (t / 1000 if t else None)
    return JobState(info.submission_id or info.job_id or "?", status,
                    (info.metadata or {}).get("surveyproc_job", ""),
                    (info.message or "").strip().splitlines()[0] if info.message else "",
                    millis(info.start_time), millis(info.end_time))


class ClusterJobs:
    """The Jobs API of one Ray cluster, with errors in one line."""

    def __init__(self, address: str | None) -> None:
        self.address = check_address(address)
        token = cluster_token()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = self._call(self._connect, what="connect")

    def _connect(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address, headers=dict(self._headers))

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, job_id: str | None = None
              ) -> Any:
        """``fn(*args)``, with the Jobs API's failures turned into one-line ClusterErrors."""
        try:
            return fn(*args)
        except ClusterError:
            raise
        except Exception as error:  # the SDK raises plain RuntimeError/ConnectionError
            raise ClusterError(self._explain(error, what, job_id)) from None

    def _explain(self, error: Exception, what: str, job_id: str | None) -> str:
        text = str(error)
        where = f"the Ray cluster at {self.address}"
        if "Authentication required" in text or "status code 401" in text:
            return (f"{where} requires a token and none was found: set {TOKEN_ENV} or "
                    f"{TOKEN_PATH_ENV} (see deploy/README.md, 'the Ray token')")
        if "Authentication failed" in text or "status code 403" in text:
            return (f"{where} refused the token (HTTP 403): {TOKEN_ENV} / {TOKEN_PATH_ENV} "
                    "must hold that cluster's token")
        if "status code 404" in text and job_id is not None:
            return f"{where} has no job {job_id!r} (surveyproc list shows its jobs)"
        if isinstance(error, ConnectionError) or "Failed to connect" in text \
                or "Connection refused" in text or "Max retries" in text:
            return (f"cannot reach {where} (is the head up, and is 8265 forwarded? e.g. "
                    "kubectl port-forward svc/surveyproc-head-svc 8265)")
        first = re.sub(r"\s+", " ", text.strip().splitlines()[0] if text.strip() else "")
        return f"{what} failed on {where}: {type(error).__name__}: {first[:300]}"

    # -- the commands --------------------------------------------------------------------

    def submit(self, job: JobSpec, *, ship_package: bool = True,
               submission_id: str | None = None) -> str:
        """Submit ``job``; return its job id.  Nothing secret travels: the job file (checked
        for relative paths), the package's source, and the job's name as metadata."""
        text = portable_job_text(job)
        staging = Path(tempfile.mkdtemp(prefix="surveyproc-submit-"))
        try:
            (staging / SHIPPED_JOB).write_text(text)
            runtime_env: dict[str, Any] = {"working_dir": str(staging)}
            if ship_package:
                runtime_env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
                runtime_env["excludes"] = ["__pycache__", "*.pyc"]
            return str(self._call(lambda: self._client.submit_job(
                entrypoint=f"python -m surveyproc run {SHIPPED_JOB}", runtime_env=runtime_env,
                submission_id=submission_id, metadata={"surveyproc_job": job.name}),
                what="submit"))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def state(self, job_id: str) -> JobState:
        return _state(self._call(self._client.get_job_info, job_id, what="status",
                                 job_id=job_id))

    def jobs(self) -> list[JobState]:
        infos = self._call(self._client.list_jobs, what="list")
        return sorted((_state(i) for i in infos), key=lambda s: s.start_time or 0)

    def logs(self, job_id: str) -> str:
        return str(self._call(self._client.get_job_logs, job_id, what="logs", job_id=job_id))

    def stop(self, job_id: str) -> bool:
        return bool(self._call(self._client.stop_job, job_id, what="stop", job_id=job_id))

    def follow(self, job_id: str) -> Iterator[str]:
        """The job's log as it grows, until the job ends."""
        self.state(job_id)  # an unknown id fails here, in one line
        tail = self._client.tail_job_logs(job_id)
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(tail.__anext__())
                except StopAsyncIteration:
                    return
                except Exception as error:
                    raise ClusterError(self._explain(error, "logs", job_id)) from None
        finally:
            loop.run_until_complete(tail.aclose())
            loop.close()

    def wait(self, job_id: str, poll: float = 1.0, timeout: float | None = None) -> JobState:
        """Poll until the job has finished; return its last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state.status in FINISHED:
                return state
            if deadline is not None and time.monotonic() > deadline:
                return state
            time.sleep(poll)
