"""Stores on an S3-compatible server (moto, own process on 127.0.0.1) through s3fs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surveyproc.cli import main
from surveyproc.errors import InvalidParameterError, StoreAccessError
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, generate
from surveyproc.testing import tiny_batch, tiny_store

pytestmark = pytest.mark.s3


@pytest.mark.parametrize("shard_chunks", [None, 4])
def test_round_trip_on_s3(s3_bucket, shard_chunks):
    bucket, options = s3_bucket
    url = f"{bucket}/tiny.zarr"
    tiny_store(100, chunk=8, url=url, storage_options=options, shard_chunks=shard_chunks)
    store = open_store(url, options)
    got = store.read(5, 77)
    expected = tiny_batch(5, 77)
    np.testing.assert_array_equal(got.images, expected.images)
    np.testing.assert_array_equal(got.object_id, expected.object_id)
    assert store.layout.sharded is bool(shard_chunks)


@pytest.mark.ray_cluster
def test_synth_on_ray_straight_into_s3_then_info(s3_bucket, ray_session, capsys):
    bucket, options = s3_bucket
    url = f"{bucket}/survey.zarr"
    endpoint = f"endpoint_url={options['endpoint_url']}"
    assert main(["synth", url, "--n", "300", "--size", "16", "--chunk", "64",
                 "--shard-chunks", "2", "-o", endpoint]) == 0
    capsys.readouterr()
    assert main(["info", url, "--json", "-o", endpoint]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_objects"] == 300 and info["bands"] == ["g", "r", "i", "z"]
    assert info["chunk_objects"] == 64 and info["shard_objects"] == 128
    assert info["stored_bytes"] > 0
    assert 0.02 < info["labels"]["redshift"]["median"] < 0.3
    # Ray workers wrote exactly what a serial run generates.
    store = open_store(url, options)
    serial = generate(SynthConfig(n=300, size=16), 0, 300)
    np.testing.assert_array_equal(store.read(0, 300).images, serial.images)


def test_missing_and_malformed_s3_stores_give_one_line(s3_bucket, capsys):
    bucket, options = s3_bucket
    endpoint = f"endpoint_url={options['endpoint_url']}"
    assert main(["info", f"{bucket}/absent.zarr", "-o", endpoint]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    url = f"{bucket}/bad.zarr"
    tiny_store(20, chunk=8, url=url, storage_options=options)
    import s3fs

    s3fs.S3FileSystem(**options).rm(f"{url[5:]}/ra", recursive=True)
    assert main(["info", url, "-o", endpoint]) == 2
    err = capsys.readouterr().err
    assert err == f"surveyproc: error: store {url}: array 'ra' is missing\n"


def test_credentials_in_a_url_are_refused_without_echoing_them(s3_bucket):
    bucket, options = s3_bucket
    with pytest.raises(InvalidParameterError, match="carries credentials") as caught:
        open_store(f"s3://AKIAEXAMPLE:sup3rsecret@{bucket[5:]}/x.zarr", options)
    assert "sup3rsecret" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_unreachable_endpoint_is_one_line(tmp_path):
    from tests.support.servers import free_port

    options = {"endpoint_url": f"http://127.0.0.1:{free_port()}",
               "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}
    with pytest.raises(StoreAccessError, match=r"store s3://nobucket/x.zarr: cannot open it "
                                               r"\(\w*Error"):
        open_store("s3://nobucket/x.zarr", options)
