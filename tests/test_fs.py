from __future__ import annotations

import os

from surveyproc.fs import is_local, is_process_local, join, normalize, redact, resolve


def test_redact_removes_userinfo_only():
    assert redact("s3://KEY:SECRET@bucket/a.zarr") == "s3://bucket/a.zarr"
    assert redact("https://user@host/x") == "https://host/x"
    assert redact("s3://bucket/a@b.zarr") == "s3://bucket/a@b.zarr"
    assert redact("/tmp/x.zarr") == "/tmp/x.zarr"


def test_local_urls_become_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize("s.zarr") == os.path.join(str(tmp_path), "s.zarr")
    assert normalize("file:///data/s.zarr") == "/data/s.zarr"
    assert normalize("s3://bucket/s.zarr/") == "s3://bucket/s.zarr"
    assert is_local("s.zarr") and is_local("file:///x") and not is_local("s3://b/x")
    assert is_process_local("memory://x") and not is_process_local("s3://b/x")


def test_join_uses_slashes_for_every_protocol():
    assert join("s3://bucket/run", "catalog", "part-0.parquet") == \
        "s3://bucket/run/catalog/part-0.parquet"
    assert join("/tmp/out/", "/a") == "/tmp/out/a"


def test_resolve_applies_protocol_defaults_under_user_options(s3_endpoint):
    fs, path = resolve("s3://bucket/x", {"endpoint_url": s3_endpoint,
                                         "config_kwargs": {"read_timeout": 5}})
    assert path == "bucket/x"
    assert fs.config_kwargs == {"max_pool_connections": 64, "read_timeout": 5}
