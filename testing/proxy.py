"""A small HTTP proxy in front of a real backend, for fault injection in tests and benchmarks.

It forwards GET requests and can answer some of them with an error status, cut their
answer short (valid HTTP, truncated JSON), delay them, or call a hook first (the SIGKILL
test uses the hook to kill ``gpumeter collect`` at a known point; a hook that sleeps
delays a request). It records each request's headers. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import threading
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
        self.truncate_next = 0  # answer this many with the first half of the real body
        self.headers: list[dict[str, str]] = []  # of every request, in order
        self.on_request: Callable[[int, str], None] | None = None
        self.requests = 0
        self.lock = threading.Lock()


@contextmanager
def proxy(target: str) -> Iterator[tuple[str, Faults]]:
    faults = Faults()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with faults.lock:
                faults.requests += 1
                n = faults.requests
                fail = faults.always_fail or faults.fail_next > 0
                if faults.fail_next > 0:
                    faults.fail_next -= 1
                truncate = not fail and faults.truncate_next > 0
                if truncate:
                    faults.truncate_next -= 1
                faults.headers.append(dict(self.headers.items()))
            if faults.on_request:
                faults.on_request(n, self.path)
            if fail:
                body = b'{"status":"error","errorType":"unavailable","error":"injected"}'
                self.send_response(faults.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            r = requests.get(target + self.path, timeout=120)
            body = r.content[: len(r.content) // 2] if truncate else r.content
            try:
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout under test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with in_thread(server):
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
