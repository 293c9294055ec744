"""Stripe webhooks: payment events into the store, for the finance dashboard.

``gpumeter stripe webhook`` serves ``POST /stripe/webhook`` (on 127.0.0.1 by default;
put a TLS-terminating proxy in front for Stripe to reach it). Each request:

1. is verified with ``stripe.Webhook.construct_event`` against the endpoint secret —
   a missing or wrong ``Stripe-Signature``, or one older than 5 minutes, is answered 400
   and nothing is recorded;
2. if it is ``invoice.paid`` or ``invoice.payment_failed``, is recorded in
   ``stripe_events`` (event id, type, Stripe invoice id → gpumeter number, Stripe's time)
   and sets the invoice's ``payment_status`` in ``stripe_documents`` — unless a later
   event already did (Stripe does not promise order);
3. is answered 200. A replayed event id (Stripe retries until it gets a 2xx) is answered
   200 and recorded once. Other event types are acknowledged and ignored.

DuckDB has one writer per file, and ``collect`` / ``invoice`` / ``stripe sync`` need it
too: the server opens the store per event, briefly, waiting up to ``lock_wait_s`` for
another writer; if the store stays locked it answers 503 and Stripe retries later.
The endpoint secret is passed in (only the CLI reads the environment) and never logged.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import stripe

from gpumeter import store
from gpumeter.errors import StoreError

WEBHOOK_PATH = "/stripe/webhook"
MAX_BODY_BYTES = 1 << 20
#: Stripe event type → the payment status it sets.
PAYMENT_EVENTS = {"invoice.paid": "paid", "invoice.payment_failed": "payment_failed"}


@dataclass(frozen=True)
class Outcome:
    """What one delivery did: the HTTP status to answer and why."""

    status: int
    message: str
    recorded: bool = False


def handle_event(
    con: duckdb.DuckDBPyConnection,
    payload: bytes,
    signature: str | None,
    secret: str,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Verify one delivery and record it; never raises for a bad delivery."""
    try:
        event = stripe.Webhook.construct_event(payload.decode("utf-8"), signature, secret)
    except stripe.SignatureVerificationError:
        return Outcome(400, "signature verification failed")
    except (ValueError, UnicodeDecodeError):
        return Outcome(400, "not a Stripe event")
    data = event.to_dict()
    kind = data.get("type")
    status = PAYMENT_EVENTS.get(kind) if isinstance(kind, str) else None
    if status is None:
        return Outcome(200, f"ignored {kind}")
    obj = (data.get("data") or {}).get("object") or {}
    stripe_id = obj.get("id")
    event_id = data.get("id")
    created = data.get("created")
    if not isinstance(stripe_id, str) or not isinstance(event_id, str) or not isinstance(created, int):
        return Outcome(400, "event lacks id, created or data.object.id")
    at = datetime.fromtimestamp(created, UTC)
    row = store.run(con, "stripe_document_by_stripe_id", {"stripe_id": stripe_id}).fetchone()
    metadata = obj.get("metadata") or {}
    number = str(row[0]) if row else metadata.get("gpumeter_invoice")
    with store.transaction(con):
        first = store.run(
            con,
            "stripe_event_record",
            {
                "event_id": event_id,
                "type": kind,
                "stripe_id": stripe_id,
                "number": number,
                "created_at": at,
                "received_at": now(),
            },
        ).fetchall()
        if not first:
            return Outcome(200, f"duplicate {event_id}")
        store.run(con, "stripe_event_payment", {"stripe_id": stripe_id, "payment_status": status, "at": at}).fetchall()
    return Outcome(200, f"recorded {kind} for {number or stripe_id}", recorded=True)


class WebhookServer(ThreadingHTTPServer):
    """The HTTP endpoint; one short store connection per event."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        database: Path,
        secret: str,
        lock_wait_s: float = 5.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook endpoint secret is required")
        self.database = Path(database)
        self.secret = secret
        self.lock_wait_s = lock_wait_s
        self.log = log
        self.db_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{WEBHOOK_PATH}"

    def deliver(self, payload: bytes, signature: str | None) -> Outcome:
        with self.db_lock:
            try:
                con = store.connect(self.database, wait_s=self.lock_wait_s)
            except StoreError:
                return Outcome(503, "store busy; retry later")
            try:
                store.require_schema(con)
                return handle_event(con, payload, signature, self.secret)
            finally:
                con.close()


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    server_version = "gpumeter-webhook"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small answers

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line is not interesting; outcomes are logged in do_POST

    def _answer(self, outcome: Outcome) -> None:
        body = json.dumps({"ok": outcome.status < 300, "message": outcome.message}).encode()
        self.send_response(outcome.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.server.log is not None:
            self.server.log(f"{outcome.status} {outcome.message}")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != WEBHOOK_PATH:
            self._answer(Outcome(404, "not found"))
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._answer(Outcome(411, "Content-Length required"))
            return
        if length > MAX_BODY_BYTES:
            self._answer(Outcome(413, "body too large"))
            return
        payload = self.rfile.read(length)
        self._answer(self.server.deliver(payload, self.headers.get("Stripe-Signature")))

    def do_GET(self) -> None:
        self._answer(Outcome(405, "POST Stripe events to " + WEBHOOK_PATH))


def make_server(
    database: Path,
    secret: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8789,
    log: Callable[[str], None] | None = None,
) -> WebhookServer:
    """A bound, not yet serving, webhook server (``port=0``: a free port)."""
    return WebhookServer((host, port), database=database, secret=secret, log=log)


def serve(database: Path, secret: str, *, host: str = "127.0.0.1", port: int = 8789) -> None:
    """Serve until interrupted (the CLI's ``gpumeter stripe webhook``)."""
    server = make_server(database, secret, host=host, port=port, log=lambda m: print(m, file=sys.stderr))
    print(f"listening on {server.url}", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
