"""A fault-injecting HTTP proxy on 127.0.0.1, in front of the loopback S3 server.

Clients talk to the proxy as if it were S3 (``endpoint_url``); each request is
forwarded to the real server unless the seeded dice (or a rule for a key)
say otherwise:

- ``error``: an HTTP 503 ``SlowDown`` or 500 ``InternalError`` with S3's XML body;
- ``slow``: the answer comes after ``slow_seconds``;
- ``reset``: the connection is closed with a TCP reset before any answer;
- ``broken`` keys (substrings of the path) fail with 500 on every request,
  a chunk that stays unreadable however often it is retried.

Counts of requests by method and of faults by kind are kept, so tests can
assert what was injected (and how many requests a protocol costs).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "FaultRates", "fault_proxy"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
               "trailer", "upgrade"}
_ERRORS = [(503, "SlowDown", "Please reduce your request rate."),
           (500, "InternalError", "We encountered an internal error. Please try again.")]


@dataclass
class FaultRates:
    """Probability of each fault per request (independent of the method)."""

    error: float = 0.0
    slow: float = 0.0
    reset: float = 0.0
    slow_seconds: float = 0.5


@dataclass
class FaultProxy:
    """State shared by the proxy's handler threads."""

    upstream: str
    rates: FaultRates
    seed: int = 0
    broken: set[str] = field(default_factory=set)
    requests: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    endpoint: str = ""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.enabled = True

    def draw(self, path: str) -> str | None:
        """The fault for one request (None: forward it as it is)."""
        with self._lock:
            if any(key in path for key in self.broken):
                self.faults["broken"] += 1
                return "broken"
            if not self.enabled:
                return None
            roll = self._rng.random()
            for kind in ("error", "slow", "reset"):
                rate = getattr(self.rates, kind)
                if roll < rate:
                    self.faults[kind] += 1
                    return kind
                roll -= rate
        return None

    def count(self, method: str) -> None:
        with self._lock:
            self.requests[method] += 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Forward everything (but broken keys) while the block runs, e.g. to set up data."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _error(self, status: int, code: str, text: str) -> None:
            body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{text}</Message></Error>").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self, body: bytes) -> None:
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                length = answer.getheader("Content-Length")
                self.send_header("Content-Length",
                                 length if self.command == "HEAD" and length else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                connection.close()

        def _serve(self) -> None:
            body = self._body()
            proxy.count(self.command)
            fault = proxy.draw(self.path)
            if fault == "reset":
                self._reset()
                return
            if fault == "slow":
                time.sleep(proxy.rates.slow_seconds)
            if fault in ("error", "broken"):
                self._error(*(_ERRORS[1] if fault == "broken"
                              else _ERRORS[proxy.requests.total() % 2]))
                return
            self._forward(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up mid-answer (a reset it asked for, a timeout): not news."""


@contextlib.contextmanager
def fault_proxy(upstream: str, rates: FaultRates | None = None, *, seed: int = 0
                ) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` for ``upstream`` on a free 127.0.0.1 port while the block
    runs; its ``endpoint`` is the URL to give clients."""
    proxy = FaultProxy(upstream, rates or FaultRates(), seed)
    server = _QuietServer(("127.0.0.1", 0), _handler(proxy))
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
