"""A small HTTP proxy in front of a real backend, for fault injection in tests and benchmarks.

It forwards GET requests and can, for the next N requests each: answer with an error status
(``fail_next``), cut the answer short (``truncate_next``: the headers promise the whole body,
half of it is sent, then the connection is closed, as a reset link does), or answer late
(``delay_next`` requests wait ``delay_s`` first). ``on_request`` is called first with the
request's number and path, so a test can steer the fault of each request, or act at a known
point (the SIGKILL tests kill ``gpumeter collect``, or Prometheus itself, from it). A backend
that does not answer gives 502, as a real proxy does. It records each request's headers.
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from testing.servers import in_thread


class Faults:
    def __init__(self) -> None:
        self.fail_next = 0  # answer this many requests with `status`
        self.status = 503
        self.always_fail = False
        self.truncate_next = 0  # send half of this many answers, then close the connection
        self.delay_next = 0  # answer this many requests `delay_s` late
        self.delay_s = 0.0
        self.headers: list[dict[str, str]] = []  # of every request, in order
        self.on_request: Callable[[int, str], None] | None = None
        self.requests = 0
        # (request number, what it got): "fail" | "truncate" | "delay" | "bad gateway" (backend gone)
        self.injected: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def _take(self, n: int) -> tuple[bool, bool, bool]:
        """Which faults request ``n`` gets (each counter is used up one request at a time)."""
        with self.lock:
            fail = self.always_fail or self.fail_next > 0
            truncate = not fail and self.truncate_next > 0
            delay = self.delay_next > 0
            self.fail_next = max(self.fail_next - 1, 0)
            self.truncate_next -= 1 if truncate else 0
            self.delay_next -= 1 if delay else 0
            for name, on in (("fail", fail), ("truncate", truncate), ("delay", delay)):
                if on:
                    self.injected.append((n, name))
        return fail, truncate, delay


@contextmanager
def proxy(target: str) -> Iterator[tuple[str, Faults]]:
    faults = Faults()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, content_type: str, body: bytes, *, truncate: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)
            if truncate:
                self.wfile.flush()
                self.close_connection = True

        def do_GET(self) -> None:
            with faults.lock:
                faults.requests += 1
                n = faults.requests
                faults.headers.append(dict(self.headers.items()))
            if faults.on_request:
                faults.on_request(n, self.path)
            fail, truncate, delay = faults._take(n)
            if delay:
                time.sleep(faults.delay_s)
            try:
                if fail:
                    body = b'{"status":"error","errorType":"unavailable","error":"injected"}'
                    self._answer(faults.status, "application/json", body)
                    return
                try:
                    r = requests.get(target + self.path, timeout=120)
                except requests.RequestException:
                    with faults.lock:
                        faults.injected.append((n, "bad gateway"))
                    self._answer(502, "text/plain", b"bad gateway: the backend did not answer\n")
                    return
                content_type = r.headers.get("Content-Type", "application/json")
                self._answer(r.status_code, content_type, r.content, truncate=truncate)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout passed during a delay)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with in_thread(server):
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
