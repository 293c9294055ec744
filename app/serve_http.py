"""``gpumeter serve``'s own telemetry: Prometheus metrics, ``/healthz`` and ``/readyz``.

The metrics live in a ``prometheus_client`` registry handed in (a fresh one per process,
or per test), served by a small threaded HTTP server bound to 127.0.0.1 unless told
otherwise:

==========================================  =====================================================
``gpumeter_windows_metered_total``          hour windows metered for the first time
``gpumeter_late_revisions_total``           windows metered again whose result changed (late samples)
``gpumeter_backend_errors_total{kind}``     failed backend requests, by :attr:`TelemetryError.kind`
``gpumeter_metering_lag_seconds``           now - end of the newest complete window (read at scrape time)
``gpumeter_last_success_timestamp_seconds`` when the last cycle completed without a failure
==========================================  =====================================================

``/healthz`` answers 200 while the process runs; ``/readyz`` 200 when the backend answered
its last probe and the lag is below the threshold, else 503 with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from metering.errors import TelemetryError


@dataclass
class Health:
    """What ``/readyz`` judges: set by the serve loop, read by the HTTP threads."""

    backend_ok: bool = False
    backend_problem: str = "the backend has not been asked yet"
    frontier_s: float | None = None  # end of the newest complete window (Unix s)


class ServeMetrics:
    """The serve metrics in ``registry``; the lag is computed from ``clock`` when scraped."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float], max_lag_s: float) -> None:
        self.registry = registry
        self.clock = clock
        self.max_lag_s = max_lag_s
        self.health = Health()
        self.windows_metered = Counter(
            "gpumeter_windows_metered", "Hour windows metered for the first time.", registry=registry
        )
        self.late_revisions = Counter(
            "gpumeter_late_revisions",
            "Windows metered again whose result changed (samples arrived late); each is a revision in the audit log.",
            registry=registry,
        )
        self.backend_errors = Counter(
            "gpumeter_backend_errors", "Failed requests to the telemetry backend, by kind.", ["kind"], registry=registry
        )
        for kind in TelemetryError.KINDS:
            self.backend_errors.labels(kind=kind)
        self.last_success = Gauge(
            "gpumeter_last_success_timestamp_seconds",
            "Unix time of the last metering cycle that completed without a failure.",
            registry=registry,
        )
        lag = Gauge(
            "gpumeter_metering_lag_seconds",
            "Seconds between now and the end of the newest complete hour window.",
            registry=registry,
        )
        lag.set_function(self.lag_s)

    def lag_s(self) -> float:
        frontier = self.health.frontier_s
        return float("nan") if frontier is None else max(0.0, self.clock() - frontier)

    def ready(self) -> tuple[bool, str]:
        """(ready, reason) for ``/readyz``."""
        h = self.health
        if not h.backend_ok:
            return False, f"backend not reachable: {h.backend_problem}"
        lag = self.lag_s()
        if not lag <= self.max_lag_s:
            return False, f"metering lag {lag:.0f} s is above {self.max_lag_s:.0f} s"
        return True, f"ready; metering lag {lag:.0f} s"


def _handler(metrics: ServeMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # scrapes are not worth a log line
            pass

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, reason = metrics.ready()
                self._send(200 if ok else 503, (reason + "\n").encode())
            else:
                self._send(404, b"not found: /metrics, /healthz and /readyz are served here\n")

    return Handler


@contextmanager
def serving(metrics: ServeMetrics, host: str, port: int) -> Iterator[str | None]:
    """Serve the endpoints on host:port until the block ends (port 0: not at all); yields the URL."""
    if port == 0:
        yield None
        return
    server = ThreadingHTTPServer((host, port), _handler(metrics))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="serve-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
