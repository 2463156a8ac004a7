"""Subprocess servers and tools for tests (and benchmarks): loopback S3 (moto), a real
Prometheus, headless Chromium, and Ray worker process lookup.

Every server binds to 127.0.0.1 and is stopped by its PID; none of this ships
with the package.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["BrowserCheck", "browser_check", "free_port", "moto_server", "prometheus_server",
           "require_program"]


def require_program(name: str, found: bool) -> None:
    """Skip the calling test when a program is missing -- except under CI (``CI=true``),
    where a missing program is a failure, so the suite cannot pass quietly."""
    import pytest

    if found:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{name} is not installed, and CI requires it")
    pytest.skip(f"{name} is not installed")


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


@contextlib.contextmanager
def prometheus_server(targets: list[str], workdir: str, timeout: float = 30.0,
                      relabel: list[dict] | None = None) -> Iterator[str] | Iterator[None]:
    """Run a real Prometheus on 127.0.0.1 scraping ``targets`` (``host:port``) every second,
    applying ``relabel`` (metric_relabel_configs) to what it scrapes; yield its URL, or None
    when no ``prometheus`` binary is installed.  Stopped by PID."""
    import shutil
    from pathlib import Path

    import yaml

    binary = shutil.which("prometheus")
    if binary is None:
        yield None
        return
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    scrape = {"job_name": "surveyproc", "static_configs": [{"targets": list(targets)}]}
    if relabel:
        scrape["metric_relabel_configs"] = relabel
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [scrape]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]
    with _server_process(command, f"{url}/-/ready", "prometheus", timeout):
        yield url


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
