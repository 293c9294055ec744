"""The witness over HTTP: ``POST /add-checkpoint`` and ``GET /<origin hash>/checkpoint``.

The standard library's :class:`~http.server.ThreadingHTTPServer`, as the Stripe webhook
uses, with every resource bounded, since anyone who can reach the port may talk to it:

* a body larger than :data:`audit.witness.MAX_BODY_BYTES` is refused (413) unread, and a
  request without ``Content-Length`` is refused (411);
* each socket read waits at most ``read_timeout_s``, and a connection lives at most
  ``connection_s`` in all (a watchdog shuts it): a slow client cannot hold a thread;
* at most ``max_handlers`` connections are served at once; the next is answered 503 and
  closed at once.

HTTP/1.1 keep-alive is supported (the specification recommends it) within those bounds.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from audit.witness import MAX_BODY_BYTES, Answer, Witness

_CHECKPOINT_PATH = re.compile(r"^/([0-9a-f]{64})/checkpoint$")
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n"


class WitnessServer(ThreadingHTTPServer):
    """A bound witness endpoint (``port=0``: a free port)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        witness: Witness,
        *,
        read_timeout_s: float = 10.0,
        connection_s: float = 30.0,
        max_handlers: int = 16,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.witness = witness
        self.read_timeout_s = read_timeout_s
        self.connection_s = connection_s
        self.log = log
        self._slots = threading.BoundedSemaphore(max_handlers)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        watchdog = threading.Timer(self.connection_s, _cut, (request,))
        watchdog.daemon = True
        watchdog.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            watchdog.cancel()
            self._slots.release()


def _cut(sock: socket.socket) -> None:
    """End a connection that outlived its time (the handler's next read or write fails)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: WitnessServer
    server_version = "gpumeter-witness"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout_s)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # outcomes are logged in _answer, one line each

    def _answer(self, answer: Answer, *, close: bool = False) -> None:
        """Send ``answer``; ``close`` when the request's body was not read (or not all of it)."""
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        if self.server.log is not None:
            self.server.log(f"{self.command} {self.path[:80]} {answer.status} {answer.reason}")

    def _body(self) -> bytes | Answer:
        if self.headers.get("Transfer-Encoding"):
            return Answer.refuse(411, "send the body with Content-Length, not chunked")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit() or len(length_text) > 12:
            return Answer.refuse(411, "Content-Length required")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            return Answer.refuse(413, f"body is larger than {MAX_BODY_BYTES} bytes")
        deadline = time.monotonic() + self.server.read_timeout_s
        chunks: list[bytes] = []
        left = length
        while left:
            if time.monotonic() > deadline:
                return Answer.refuse(408, "the body came too slowly")
            chunk = self.rfile.read1(min(left, 16384))
            if not chunk:
                return Answer.refuse(400, "the body ended before Content-Length")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def do_POST(self) -> None:
        if self.path != "/add-checkpoint":
            self._answer(Answer.refuse(404, "POST /add-checkpoint"), close=True)
            return
        try:
            body = self._body()
        except (TimeoutError, OSError):
            self._answer(Answer.refuse(408, "the body came too slowly"), close=True)
            return
        if isinstance(body, Answer):
            self._answer(body, close=True)
            return
        self._answer(self.server.witness.add_checkpoint(body))

    def do_GET(self) -> None:
        m = _CHECKPOINT_PATH.match(self.path)
        if m is None:
            self._answer(Answer.refuse(404, "GET /<sha256 hex of origin>/checkpoint"))
            return
        self._answer(self.server.witness.checkpoint(m.group(1)))


def make_server(
    witness: Witness,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] | None = None,
    **bounds: Any,
) -> WitnessServer:
    """A bound, not yet serving, witness server."""
    return WitnessServer((host, port), witness, log=log, **bounds)


def serve(witness: Witness, *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until interrupted (``gpumeter witness serve``); one line per request on stderr."""
    server = make_server(witness, host=host, port=port, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"witness {witness.vkey} listening on {server.url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("witness stopped", file=sys.stderr)
    finally:
        server.server_close()
