"""Benchmark helpers: the repository root on sys.path (so benchmarks can use the test
servers), and a peak-memory sampler."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import moto_server  # noqa: E402

__all__ = ["ROOT", "PeakMemory", "moto_server"]


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
