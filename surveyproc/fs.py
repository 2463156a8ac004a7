"""The one way surveyproc turns a URL into a filesystem or a Zarr store.

Every path the package touches (stores, FITS inputs, catalogs, checkpoints)
goes through :func:`resolve` or :func:`zarr_store`, so that per-protocol
defaults, credential handling and error wording live in one place.

Credentials are never taken from the URL or printed: ``s3://`` uses the
standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``, profiles, instance roles) plus whatever the job file puts
in ``storage_options``.  :func:`redact` strips any ``user:password@`` that a
user pasted into a URL before the URL reaches a log line or an error.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from .errors import InvalidParameterError
from .redact import USERINFO as _USERINFO
from .redact import redact, scrub
from .retry import retrying

__all__ = [
    "is_local",
    "is_process_local",
    "join",
    "read_bytes",
    "redact",
    "resolve",
    "scrub",
    "write_bytes_atomic",
    "zarr_store",
]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

# Per-protocol defaults, merged under the caller's storage_options.  Object
# stores get a larger connection pool because the reader fetches many chunks
# concurrently; the default of 10 would serialise a 64-object prefetch.
_PROTOCOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "s3": {"config_kwargs": {"max_pool_connections": 64}},
}


def protocol(url: str) -> str:
    """Return the fsspec protocol of ``url`` (``"file"`` for plain paths)."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "file"


def is_local(url: str) -> bool:
    """True when ``url`` names the local filesystem (a plain path or ``file://``)."""
    return protocol(url) in ("file", "local")


def is_process_local(url: str) -> bool:
    """True for ``memory://``: data other processes (Ray workers) cannot see."""
    return protocol(url) == "memory"


def normalize(url: str) -> str:
    """Absolute local path for local URLs; other URLs unchanged (trailing '/' dropped).

    Raises
    ------
    InvalidParameterError
        The URL carries credentials (``scheme://user:secret@...``): they
        would end up in logs and process lists; use the credential chain.
    """
    url = os.fspath(url)
    if _USERINFO.match(url):
        msg = (f"URL {redact(url)} carries credentials (user:password@); remove them and "
               "use the environment's credential chain (e.g. AWS_ACCESS_KEY_ID)")
        raise InvalidParameterError(msg)
    if is_local(url):
        path = url.split("://", 1)[1] if "://" in url else url
        return os.path.abspath(os.path.expanduser(path))
    return url.rstrip("/")


def join(url: str, *parts: str) -> str:
    """Join path components onto a URL with '/' whatever the protocol."""
    base = normalize(url)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def _options(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, value in _PROTOCOL_DEFAULTS.get(protocol(url), {}).items():
        merged[key] = dict(value) if isinstance(value, dict) else value
    for key, value in (storage_options or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def resolve(
    url: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Turn ``url`` into ``(filesystem, path)`` with per-protocol defaults applied."""
    url = normalize(url)
    fs, path = url_to_fs(url, **_options(url, storage_options))
    return fs, path


def zarr_store(url: str, storage_options: dict[str, Any] | None = None, *, read_only: bool):
    """Open a Zarr v3 store object for ``url``.

    Local paths use zarr's ``LocalStore`` (no fsspec layer, fastest); every
    other protocol uses ``FsspecStore``, which wraps synchronous filesystems
    such as ``memory://`` for zarr's async core.
    """
    from zarr.storage import FsspecStore, LocalStore

    url = normalize(url)
    if is_local(url):
        return LocalStore(url, read_only=read_only)
    return FsspecStore.from_url(url, storage_options=_options(url, storage_options),
                                read_only=read_only)


def write_bytes_atomic(url: str, data: bytes,
                       storage_options: dict[str, Any] | None = None) -> None:
    """Write ``data`` to ``url`` so that readers see the old file or the whole new one.

    Local files are written beside the target under a dot-prefixed name
    (which dataset readers such as pyarrow skip, should a crash leave one
    behind) and renamed over it; object stores (S3, GCS) make a single PUT
    visible atomically.  Transient errors are retried (:mod:`surveyproc.retry`):
    a repeated PUT of the same bytes is harmless.
    """
    fs, path = resolve(url, storage_options)
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        fs.makedirs(parent, exist_ok=True)
    if is_local(url):
        directory, _, name = path.rpartition("/")
        temporary = f"{directory}/.{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    else:
        retrying("write", lambda: fs.pipe_file(path, data))


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """The whole content of ``url``; FileNotFoundError if it does not exist."""
    fs, path = resolve(url, storage_options)
    return bytes(retrying("read", lambda: fs.cat_file(path)))
