"""Benchmark helpers: the repository root on sys.path (so benchmarks can use the test
servers), a peak-memory sampler, the machine's description, the raw-results file every
benchmark writes (``docs/results/<name>.json``, from which ``benchmarks/report.py``
builds ``docs/results.md``) and the median-and-spread summary of interleaved repeats."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import moto_server  # noqa: E402

__all__ = [
    "RESULTS",
    "ROOT",
    "PeakMemory",
    "describe",
    "machine",
    "moto_server",
    "publish",
    "ratio_text",
    "save_results",
    "spread",
    "synthetic_survey",
    "training_arguments",
]

RESULTS = ROOT / "docs" / "results"


def machine() -> dict[str, Any]:
    """What a figure was measured on: CPU count, memory, GPU and library versions."""
    import psutil
    import torch

    versions = {}
    for name in ("torch", "ray", "dask", "zarr", "pyarrow", "s3fs", "numpy"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30),
            "arch": platform.machine(), "gpu": gpu, "python": platform.python_version(),
            "versions": versions}


def describe(m: dict[str, Any]) -> str:
    """One line naming the machine of a results file."""
    v = m["versions"]
    libraries = ", ".join(f"{k} {v[k]}" for k in ("torch", "ray", "dask", "zarr") if k in v)
    gpu = m["gpu"] or "no GPU"
    return (f"Machine: {m['cpus']} CPUs ({m['arch']}), {m['memory_gib']} GiB, {gpu}; "
            f"Python {m['python']}, {libraries}.")


def save_results(name: str, args: Any, results: dict[str, Any], *, seconds: float,
                 out: str | None = None) -> Path:
    """Write a benchmark's raw results, settings and machine as JSON (default
    ``docs/results/<name>.json``) and return the path."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name,
              "command": " ".join(["python", f"benchmarks/{name}.py", *sys.argv[1:]]),
              "date": datetime.date.today().isoformat(), "minutes": round(seconds / 60, 1),
              "machine": machine(), "args": vars(args), "results": results}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"raw results: {path}")
    return path


def publish(name: str, args: Any, results: dict[str, Any], render: Any, *,
            started: float) -> Path:
    """Save a benchmark's raw results, then print its section of ``docs/results.md``
    (saved first, so that a fault in the rendering never loses a long run's figures)."""
    path = save_results(name, args, results, seconds=time.perf_counter() - started,
                        out=getattr(args, "out", None))
    print()
    print(render({"args": vars(args), "machine": machine(), "results": results}))
    return path


def training_arguments(parser: Any) -> None:
    """The arguments every benchmark that trains on the synthetic survey takes: its size,
    the optimisation, the network width, a store to reuse and where the results go."""
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32,
                        help="channels of the first ResNet-18 stage (64: the standard network)")
    parser.add_argument("--store", default=None, help="reuse (or create) the store here")
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")


def synthetic_survey(args: Any, tmp: str) -> Any:
    """The benchmarks' synthetic survey (seed 2024, ``args.n`` galaxies of ``args.size``
    pixels) at ``args.store``, created there if absent, else in ``tmp``."""
    from surveyproc.store import open_store
    from surveyproc.store.synth import SynthConfig, synthesize

    url = args.store or str(Path(tmp) / "survey.zarr")
    if not Path(url).exists():
        synthesize(url, SynthConfig(n=args.n, size=args.size, seed=2024))
    return open_store(url)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of repeated measurements (how ratios are quoted).

    Examples
    --------
    >>> spread([0.9, 1.1, 1.0])
    {'median': 1.0, 'min': 0.9, 'max': 1.1, 'n': 3}
    """
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def pit_ks(pit: Any) -> float:
    """Kolmogorov-Smirnov distance of PIT values from the uniform distribution.

    >>> pit_ks([0.25, 0.75])
    0.25
    """
    import numpy as np

    pit = np.sort(np.asarray(pit, dtype=float))
    n = len(pit)
    return float(max(np.max(np.arange(1, n + 1) / n - pit), np.max(pit - np.arange(n) / n)))


def ratio_text(s: dict[str, float]) -> str:
    """A ratio as quoted in the results: median (min-max).

    >>> ratio_text({"median": 1.0, "min": 0.9, "max": 1.1, "n": 3})
    '1.00 (0.90-1.10)'
    """
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


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
