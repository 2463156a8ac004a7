"""Helpers for tests, examples and benchmarks: tiny stores from a seed, a loopback S3 server.

Ship the generator, not fixtures: everything here builds its data on the fly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import numpy as np

from .store import CutoutBatch, StoreSpec, StoreWriter, SurveyStore, create_store, open_store

__all__ = ["free_port", "moto_server", "seeded_checkpoint", "tiny_batch", "tiny_store"]


def tiny_batch(start: int, stop: int, bands: int = 2, size: int = 8,
               labels: tuple[str, ...] = ("redshift",)) -> CutoutBatch:
    """Objects ``[start, stop)`` whose every value encodes its index (easy to check).

    Pixel ``(b, y, x)`` of object ``i`` is ``i + b / 10``; ids are ``i``;
    ``labels/redshift`` is ``i / 1000``.
    """
    index = np.arange(start, stop)
    images = (index[:, None, None, None] + np.arange(bands)[None, :, None, None] / 10.0
              + np.zeros((1, 1, size, size)))
    return CutoutBatch(
        start=start,
        object_id=index.astype(np.int64),
        ra=150.0 + index * 1e-3,
        dec=2.0 + index * 1e-3,
        images=images.astype(np.float32),
        photometry={f"b{k}": (index + k).astype(np.float32) for k in range(bands)},
        labels={name: (index / 1000.0).astype(np.float32) for name in labels},
    )


def tiny_store(n: int = 100, *, chunk: int = 16, bands: int = 2, size: int = 8,
               url: str | None = None, shard_chunks: int | None = None,
               dtype: str = "float32", storage_options: dict | None = None) -> SurveyStore:
    """Write a small store of :func:`tiny_batch` objects (in memory unless ``url``) and open it."""
    url = url or f"memory://surveyproc-tiny/{uuid.uuid4().hex}.zarr"
    spec = StoreSpec(n_objects=n, bands=tuple(f"b{k}" for k in range(bands)), height=size,
                     width=size, labels=("redshift",), chunk_objects=chunk,
                     shard_chunks=shard_chunks, dtype=dtype, survey="tiny")
    create_store(url, spec, storage_options=storage_options, provenance={"generator": "tiny"})
    writer = StoreWriter(url, storage_options)
    unit = spec.write_unit
    for start in range(0, n, unit):
        writer.write(tiny_batch(start, min(start + unit, n), bands, size))
    writer.finalize()
    return open_store(url, storage_options)


def seeded_checkpoint(store: SurveyStore, kind: str, targets: list[str], *, seed: int = 0,
                      width: int = 8, **config):
    """A real checkpoint for ``store`` whose weights are a seeded initialisation.

    Inference tests need a checkpoint that fits the store, not a good one:
    this skips training.  Targets are standardised to mean 0, std 1 (or the
    label's own statistics when the store has it); validation RMSE is recorded
    as 0.1 per target so point-estimate uncertainties are defined.
    """
    import torch

    from .models import Checkpoint, Normalization, TargetInfo, get_model

    torch.manual_seed(seed)
    full = {"in_bands": len(store.bands), "n_targets": len(targets), "width": width, **config}
    model = get_model(kind, **full)
    infos = []
    for name in targets:
        values = (store.read_column(f"labels/{name}") if name in store.label_names
                  else np.zeros(2))
        mean, std = float(np.nanmean(values)), float(np.nanstd(values) or 1.0)
        infos.append(TargetInfo(name, "", mean, std))
    return Checkpoint(kind=kind, config=full, bands=list(store.bands),
                      image_size=[store.layout.height, store.layout.width],
                      normalization=Normalization(tuple(0.05 for _ in store.bands)),
                      targets=infos, state_dict=model.state_dict(),
                      metrics={"val": {f"rmse_{t}": 0.1 for t in targets}},
                      provenance={"seeded": seed})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[str]:
    """Run moto's S3-compatible server on 127.0.0.1 in a subprocess; yield its endpoint URL.

    A separate process (not moto's in-process thread) so that benchmarks do
    not share a GIL with the server.  Stopped by PID on exit.
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"moto server did not start on {endpoint}"
                    raise RuntimeError(msg) from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
