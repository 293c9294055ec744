"""A live stand-in for dcgm-exporter: ``/metrics`` and ``/health`` over HTTP.

``/metrics`` serves :func:`render_exporter_page` for the simulated instant that the wall
clock maps to (the period repeats: ``start + (now - start) mod duration``), or for the
fixed instant given to :func:`serve_exporter`. Query parameters: ``node=<hostname>`` for
one node's exporter (503 while that exporter is in a simulated outage), ``at=<ISO 8601>``
to pin the instant, ``style=4.5|4.6``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from simulator.exposition import ExporterDown, render_exporter_page
from simulator.fleet import Fleet

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def simulated_instant(fleet: Fleet, now: datetime) -> datetime:
    """``now`` folded into the simulated period (whole milliseconds)."""
    spec = fleet.spec
    period_ms = spec.end_ms - spec.start_ms
    offset = (int(now.timestamp() * 1000) - spec.start_ms) % period_ms
    return spec.start + timedelta(milliseconds=offset)


def _handler(fleet: Fleet, at: datetime | None, style: str, clock: Callable[[], datetime]) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gpumeter-sim-dcgm-exporter"

        def _send(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path == "/health":
                self._send(200, "OK\n")
                return
            if url.path != "/metrics":
                self._send(404, "not found\n")
                return
            try:
                when = datetime.fromisoformat(query["at"]) if "at" in query else at
                if when is not None and when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                instant = when or simulated_instant(fleet, clock())
                page = render_exporter_page(fleet, instant, query.get("style", style), hostname=query.get("node"))
            except ExporterDown as exc:
                self._send(503, f"{exc}\n")
            except KeyError as exc:
                self._send(404, f"unknown node {exc}\n")
            except ValueError as exc:
                self._send(400, f"{exc}\n")
            else:
                self._send(200, page)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def serve_exporter(
    fleet: Fleet,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    at: datetime | None = None,
    style: str = "4.5",
    clock: Callable[[], datetime] | None = None,
) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; returns the server and its base URL.

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    now = clock or (lambda: datetime.now(UTC))
    server = ThreadingHTTPServer((host, port), _handler(fleet, at, style, now))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sim-dcgm-exporter", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    return server, f"http://{bound_host!s}:{bound_port}"
