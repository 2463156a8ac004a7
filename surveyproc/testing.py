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
from dataclasses import dataclass

import numpy as np

from .store import CutoutBatch, StoreSpec, StoreWriter, SurveyStore, create_store, open_store

__all__ = ["BrowserCheck", "PeakMemory", "browser_check", "free_port", "label_store",
           "moto_server", "prometheus_server", "ray_worker_pids", "seeded_checkpoint",
           "synthetic_catalog", "tiny_batch", "tiny_store"]


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


LINE_LABELS = ("flux_nii", "flux_halpha", "flux_oiii", "flux_hbeta")


def _label_columns(index: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Labels with known structure for objects ``index``: redshift, metallicity, BPT lines."""
    rng = np.random.default_rng([seed, int(index[0]) if len(index) else 0])
    n = len(index)
    z = rng.uniform(0.02, 0.38, n)
    metallicity = np.where(rng.random(n) < 0.1, np.nan, rng.normal(8.7, 0.15, n))
    halpha = rng.lognormal(3.0, 0.5, n)
    return {"redshift": z.astype(np.float32), "metallicity": metallicity.astype(np.float32),
            "flux_halpha": halpha.astype(np.float32),
            "flux_nii": (halpha * 10 ** rng.normal(-0.4, 0.2, n)).astype(np.float32),
            "flux_hbeta": (halpha / 2.86).astype(np.float32),
            "flux_oiii": (halpha / 2.86 * 10 ** rng.normal(-0.2, 0.4, n)).astype(np.float32)}


def label_store(url: str, n: int, *, seed: int = 0, chunk: int = 65_536,
                storage_options: dict | None = None) -> SurveyStore:
    """A store of ``n`` objects with 1x1-pixel images and :func:`_label_columns` labels.

    For statistics tests and benchmarks that need labels for millions of objects
    and no pixels.
    """
    names = tuple(_label_columns(np.arange(1), seed))
    spec = StoreSpec(n_objects=n, bands=("r",), height=1, width=1, labels=names,
                     chunk_objects=chunk, survey="labels-only")
    create_store(url, spec, storage_options=storage_options, provenance={"generator": "labels"})
    writer = StoreWriter(url, storage_options)
    for start in range(0, n, spec.write_unit):
        index = np.arange(start, min(start + spec.write_unit, n))
        rng = np.random.default_rng([seed, start, 1])
        writer.write(CutoutBatch(
            start=start, object_id=index.astype(np.int64), ra=np.zeros(len(index)),
            dec=np.zeros(len(index)), images=np.ones((len(index), 1, 1, 1), np.float32),
            photometry={"r": (10 ** (-0.4 * (rng.uniform(16, 23, len(index)) - 22.5)))
                        .astype(np.float32)},
            labels=_label_columns(index, seed)))
    writer.finalize()
    return open_store(url, storage_options)


def synthetic_catalog(url: str, store: SurveyStore, *, rows_per_part: int = 4096,
                      n_features: int = 64, k: int = 4, pdf_scale: float | None = 1.0,
                      z_error: float = 0.02, n_bins: int = 180, seed: int = 0,
                      storage_options: dict | None = None) -> None:
    """Write a catalog for ``store`` the way ``surveyproc infer`` would, without images.

    Point estimates are truth + N(0, ``z_error`` (1 + z)) for redshift and
    truth + N(0, 0.05) for metallicity.  With ``pdf_scale``, each galaxy gets
    a Gaussian redshift PDF centred on its estimate with width ``pdf_scale``
    times the true error: 1 is calibrated, < 1 over-confident, > 1
    under-confident.  Sparse activations: k of ``n_features`` features, the
    first of which tracks metallicity.
    """
    import pyarrow as pa

    from .catalog import CatalogSchema, CatalogWriter, ModelColumns
    from .catalog.pdf import grid_centres, summarize_pdfs
    from .catalog.schema import list_column

    grid = {"low": 0.0, "high": 0.4, "n_bins": n_bins}
    models = [ModelColumns("sfnet", "s", "sfnet", ("metallicity",), ("dex",), "validation_rmse",
                           k=k, spread=(0.05,), n_features=n_features)]
    if pdf_scale is not None:
        models.append(ModelColumns("photoz", "p", "binned_density", ("redshift",), ("",), "pdf",
                                   grid=grid))
    else:
        models.append(ModelColumns("zpoint", "p", "dense_cnn", ("redshift",), ("",),
                                   "validation_rmse", spread=(z_error,)))
    schema = CatalogSchema(models, {"store": {"url": store.url, "n_objects": store.n_objects},
                                    "shards": {"objects_per_shard": rows_per_part}})
    writer = CatalogWriter(url, storage_options)
    writer.prepare(schema.describe(), overwrite=True)
    arrow = schema.arrow()
    centres = grid_centres(0.0, 0.4, n_bins)
    for shard in store.plan_shards(objects_per_shard=rows_per_part):
        batch = store.read(shard.start, shard.stop, images=False, photometry=False)
        n = len(batch)
        rng = np.random.default_rng([seed, shard.start])
        z = batch.labels["redshift"].astype(np.float64)
        sigma = z_error * (1 + z)
        z_hat = z + rng.normal(0, 1, n) * sigma
        metallicity = batch.labels["metallicity"].astype(np.float64)
        m_hat = np.where(np.isfinite(metallicity), metallicity, 8.7) + rng.normal(0, 0.05, n)
        # activations: feature 0 grows with metallicity, the others are random
        # k - 1 distinct random features out of 1 .. F-1: a random start and k - 1 steps
        # whose sum stays below F - 1 (vectorised: millions of rows in seconds)
        steps = rng.integers(1, max(2, (n_features - 1) // k), (n, k - 1))
        start = rng.integers(0, n_features - 1, (n, 1))
        idx = 1 + (start + np.cumsum(steps, axis=1) - steps[:, :1]) % (n_features - 1)
        idx = np.concatenate([np.zeros((n, 1), np.int64), idx], axis=1)
        val = rng.uniform(0.5, 3.0, (n, k))
        val[:, 0] = np.clip(np.nan_to_num(metallicity - 8.2, nan=0.5) * 4, 0.01, None)
        columns: dict = {
            "object_id": batch.object_id, "ra": batch.ra, "dec": batch.dec,
            "flags": np.zeros(n, np.int32),
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), ["t"]),
            "model_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                                       [schema.model_id]),
            "metallicity_mean": m_hat, "metallicity_std": np.full(n, 0.05),
            "metallicity_q16": m_hat - 0.05, "metallicity_q50": m_hat,
            "metallicity_q84": m_hat + 0.05,
            "act_idx": list_column(idx.astype(np.int16)),
            "act_val": list_column(val.astype(np.float32))}
        if pdf_scale is not None:
            width = pdf_scale * sigma
            pdf = np.exp(-0.5 * ((centres[None] - z_hat[:, None]) / width[:, None]) ** 2)
            pdf /= pdf.sum(axis=1, keepdims=True) * (0.4 / n_bins)
            mean, std, (q16, q50, q84) = summarize_pdfs(pdf, 0.0, 0.4)
            columns.update({
                "redshift_mean": mean, "redshift_std": std, "redshift_q16": q16,
                "redshift_q50": q50, "redshift_q84": q84,
                "redshift_pdf": list_column(pdf.astype(np.float32))})
        else:
            columns.update({"redshift_mean": z_hat, "redshift_std": sigma,
                            "redshift_q16": z_hat - sigma, "redshift_q50": z_hat,
                            "redshift_q84": z_hat + sigma})
        columns = {name: (value.astype(np.float32) if isinstance(value, np.ndarray)
                          and value.dtype == np.float64 and name not in ("ra", "dec")
                          else value) for name, value in columns.items()}
        writer.commit(shard, pa.Table.from_pydict(columns, schema=arrow), "t")
    writer.finish(len(store.plan_shards(objects_per_shard=rows_per_part)), store.n_objects)


BROWSERS = ("chromium-headless-shell", "chromium", "google-chrome")
_CHECK = """<script>window.addEventListener('load', () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
                                     .map(i => i.getAttribute('src'));
  console.log('surveyproc-check images=' + document.images.length + ' broken=' +
              JSON.stringify(broken));
});</script>"""


@dataclass
class BrowserCheck:
    """What a headless browser saw of a page."""

    images: int
    broken: list[str]
    console: list[str]  # console messages of the page itself (it has no scripts: none)
    screenshot: str


def browser_check(html_path: str, screenshot: str, timeout: float = 60) -> BrowserCheck | None:
    """Render ``html_path`` in headless Chromium, screenshot it, and report broken images and
    console messages; None when no Chromium is installed.

    The page is rendered from a copy beside it with a checking script appended
    (so relative image links resolve exactly as in the original).
    """
    import json
    import re
    import shutil
    from pathlib import Path

    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        return None
    page = Path(html_path)
    probe = page.with_name(f".check-{page.name}")
    probe.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    try:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=10000", "--hide-scrollbars",
             "--window-size=1200,4000", f"--screenshot={screenshot}", probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        probe.unlink(missing_ok=True)
    messages = re.findall(r':CONSOLE[^\]]*\] "(.*)", source:', done.stderr)
    check = [m for m in messages if m.startswith("surveyproc-check")]
    if not check:
        msg = f"{browser} did not report on {html_path}: {done.stderr[-500:]}"
        raise RuntimeError(msg)
    images = int(re.search(r"images=(\d+)", check[0]).group(1))  # type: ignore[union-attr]
    broken = json.loads(check[0].split("broken=", 1)[1])
    return BrowserCheck(images, broken, [m for m in messages if m not in check], screenshot)


class PeakMemory:
    """Peak resident memory, sampled every ``interval`` s inside a ``with`` block: of this
    process (``driver``) and of the sum of its child processes (``children``: local Dask
    workers, an embedded Ray's processes), in bytes.  For benchmarks."""

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self.interval = interval
        self.driver = 0
        self.children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a child that just exited
                    total += child.memory_info().rss
            self.children = max(self.children, total)
            self.driver = max(self.driver, me.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def prometheus_server(targets: list[str], workdir: str, timeout: float = 30.0
                      ) -> Iterator[str] | Iterator[None]:
    """Run a real Prometheus on 127.0.0.1 scraping ``targets`` (``host:port``) every second;
    yield its URL, or None when no ``prometheus`` binary is installed.  Stopped by PID."""
    import shutil
    from pathlib import Path

    binary = shutil.which("prometheus")
    if binary is None:
        yield None
        return
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      "scrape_configs:\n  - job_name: surveyproc\n    static_configs:\n"
                      f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]
    with _server_process(command, f"{url}/-/ready", "prometheus", timeout):
        yield url


def ray_worker_pids(title: str) -> list[int]:
    """PIDs of Ray worker processes whose title starts with ``ray::<title>`` (an actor class),
    for tests that kill one to check recovery."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        if " ".join(proc.info["cmdline"] or []).startswith(f"ray::{title}"):
            pids.append(proc.pid)
    return pids


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server_process(command: list[str], ready_url: str, name: str,
                    timeout: float) -> Iterator[None]:
    """Start ``command``, wait until ``ready_url`` answers, and stop it by PID on exit."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"{name} did not start ({ready_url})"
                    raise RuntimeError(msg) from None
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[str]:
    """Run moto's S3-compatible server on 127.0.0.1 in a subprocess; yield its endpoint URL.

    A separate process (not moto's in-process thread) so that benchmarks do
    not share a GIL with the server.  Stopped by PID on exit.
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _server_process(command, f"{endpoint}/moto-api/", "moto server", timeout):
        yield endpoint
