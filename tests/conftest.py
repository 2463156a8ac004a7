"""Session fixtures: one real local Ray, one real S3-compatible server (moto) on 127.0.0.1.

Dummy AWS credentials are set here, before Ray starts, so Ray workers inherit
them through the environment exactly as they would inherit real ones on a
cluster; only the (non-secret) endpoint travels in ``storage_options``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["SURVEYPROC_PROGRESS"] = "0"
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_PROFILE", None)

#: Real survey files: ../shared/data beside the repository, or $SURVEYPROC_REALDATA.
SHARED_DATA = Path(os.environ.get("SURVEYPROC_REALDATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs and a small object store, shared by the session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
                 logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    """Endpoint URL of a moto S3 server on 127.0.0.1 (own process, stopped by PID)."""
    from tests.support.servers import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket: yields (``s3://bucket`` URL, storage_options with the endpoint)."""
    import s3fs

    options = {"endpoint_url": s3_endpoint}
    name = f"test-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(name)
    fs.invalidate_cache()
    yield f"s3://{name}", options


@pytest.fixture
def shared_data() -> Path:
    """The real survey files in ../shared/data, or a skip saying why."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the repository; "
                    "or set SURVEYPROC_REALDATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dask_session():
    """A real local Dask cluster (2 single-threaded workers) and its client, shared."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client
