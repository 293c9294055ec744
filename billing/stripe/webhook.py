"""Stripe webhooks: payment events into the store, for the finance dashboard.

``gpumeter stripe webhook`` serves ``POST /stripe/webhook`` (on 127.0.0.1 by default;
put a TLS-terminating proxy in front for Stripe to reach it). Each request:

1. must declare its size: ``Content-Length`` missing → 411; not a plain decimal number,
   negative, or given twice → 400; over 1 MiB → 413 — all answered before a byte of the
   body is read, so no request can make the server hold more than 1 MiB of body;
2. must arrive whole within ``request_timeout_s`` (request line, headers and body): the
   socket reads carry the time left, so a client that sends too little, or sends it a
   byte at a time, is answered 408 (or dropped, if its headers never ended);
3. is verified with ``stripe.Webhook.construct_event`` against the endpoint secret —
   a missing or wrong ``Stripe-Signature``, or one older than 5 minutes, is answered 400
   and nothing is recorded. Verification needs no store: the store is not opened for an
   unverified request, nor for an event type that is only acknowledged;
4. if it is ``invoice.paid`` or ``invoice.payment_failed``, is recorded in
   ``stripe_events`` (event id, type, Stripe invoice id → gpumeter number, Stripe's time)
   and sets the invoice's ``payment_status`` in ``stripe_documents`` — unless a later
   event already did (Stripe does not promise order);
5. is answered 200. A replayed event id (Stripe retries until it gets a 2xx) is answered
   200 and recorded once. Other event types are acknowledged and ignored.

At most ``max_handlers`` requests are handled at once; past that, a new connection is
answered 503 by the accepting thread itself, without a thread of its own (Stripe retries).

DuckDB has one writer per file, and ``collect`` / ``invoice`` / ``stripe sync`` need it
too: the server opens the store per verified payment event, briefly, waiting up to
``lock_wait_s`` for another writer; if the store stays locked it answers 503 and Stripe
retries later. The endpoint secret is passed in (only the CLI reads the environment) and
never logged.
"""

from __future__ import annotations

import io
import json
import re
import socket
import sys
import threading
import time
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
REQUEST_TIMEOUT_S = 10.0
MAX_HANDLERS = 16
#: Stripe event type → the payment status it sets.
PAYMENT_EVENTS = {"invoice.paid": "paid", "invoice.payment_failed": "payment_failed"}
_LENGTH = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Outcome:
    """What one delivery did: the HTTP status to answer and why."""

    status: int
    message: str
    recorded: bool = False


@dataclass(frozen=True)
class PaymentEvent:
    """A verified ``invoice.paid`` / ``invoice.payment_failed`` event, ready to record."""

    event_id: str
    type: str
    payment_status: str
    stripe_id: str  # the Stripe invoice
    invoice_number: str | None  # gpumeter's number, from the invoice's metadata
    created_at: datetime  # Stripe's time, UTC


def check_event(payload: bytes, signature: str | None, secret: str) -> PaymentEvent | Outcome:
    """Check one delivery's signature and shape — pure, no store; never raises for a bad delivery.

    Returns the payment event to record, or the :class:`Outcome` to answer at once (400 for
    a bad signature or body, 200 for an event type gpumeter does not record).
    """
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
    number = (obj.get("metadata") or {}).get("gpumeter_invoice")
    return PaymentEvent(
        event_id=event_id,
        type=str(kind),
        payment_status=status,
        stripe_id=stripe_id,
        invoice_number=number if isinstance(number, str) else None,
        created_at=datetime.fromtimestamp(created, UTC),
    )


def record_event(con: duckdb.DuckDBPyConnection, event: PaymentEvent, received_at: datetime) -> Outcome:
    """Record a verified payment event once and apply it to its invoice, unless a later one did."""
    row = store.run(con, "stripe_document_by_stripe_id", {"stripe_id": event.stripe_id}).fetchone()
    number = str(row[0]) if row else event.invoice_number
    with store.transaction(con):
        first = store.run(
            con,
            "stripe_event_record",
            {
                "event_id": event.event_id,
                "type": event.type,
                "stripe_id": event.stripe_id,
                "number": number,
                "created_at": event.created_at,
                "received_at": received_at,
            },
        ).fetchall()
        if not first:
            return Outcome(200, f"duplicate {event.event_id}")
        store.run(
            con,
            "stripe_event_payment",
            {"stripe_id": event.stripe_id, "payment_status": event.payment_status, "at": event.created_at},
        ).fetchall()
    return Outcome(200, f"recorded {event.type} for {number or event.stripe_id}", recorded=True)


def content_length(values: list[str]) -> int | Outcome:
    """The body size a request declares, or the answer refusing it (nothing read yet)."""
    if not values:
        return Outcome(411, "Content-Length required")
    if len(set(values)) > 1 or not _LENGTH.fullmatch(values[0]):
        return Outcome(400, "Content-Length must be one plain decimal number of bytes")
    length = int(values[0])
    if length > MAX_BODY_BYTES:
        return Outcome(413, f"body over {MAX_BODY_BYTES} bytes")
    return length


def _body(outcome: Outcome) -> bytes:
    return json.dumps({"ok": outcome.status < 300, "message": outcome.message}).encode()


class _DeadlineReader(io.RawIOBase):
    """Socket reads that share one deadline: each read may only wait for the time left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class WebhookServer(ThreadingHTTPServer):
    """The HTTP endpoint: bounded handlers, each with a deadline; one short store connection per event."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        database: Path,
        secret: str,
        lock_wait_s: float = 5.0,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_handlers: int = MAX_HANDLERS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook endpoint secret is required")
        if request_timeout_s <= 0 or max_handlers < 1:
            raise ValueError("request_timeout_s must be positive and max_handlers at least 1")
        self.database = Path(database)
        self.secret = secret
        self.lock_wait_s = lock_wait_s
        self.request_timeout_s = request_timeout_s
        self.log = log
        self.db_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max_handlers)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{WEBHOOK_PATH}"

    def deliver(self, payload: bytes, signature: str | None) -> Outcome:
        verified = check_event(payload, signature, self.secret)
        if isinstance(verified, Outcome):
            return verified
        with self.db_lock:
            try:
                con = store.connect(self.database, wait_s=self.lock_wait_s)
            except StoreError:
                return Outcome(503, "store busy; retry later")
            try:
                store.require_schema(con)
                return record_event(con, verified, datetime.now(UTC))
            finally:
                con.close()

    # ---- bounded concurrency: a slot per handler thread, 503 from the accepting thread past that ----
    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self._refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refuse_busy(self, sock: socket.socket) -> None:
        """Answer 503 without waiting on the client: drop what it already sent, write, close."""
        outcome = Outcome(503, "too many requests at once; retry later")
        body = _body(outcome)
        head = (
            f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.setblocking(False)
            try:
                for _ in range(16):  # what already arrived, so that closing does not reset the answer
                    if not sock.recv(65536):
                        break
            except BlockingIOError:
                pass
            sock.send(head.encode() + body)
        except OSError:
            pass  # the client is gone or not reading; Stripe retries either way
        if self.log is not None:
            self.log(f"{outcome.status} {outcome.message}")


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    server_version = "gpumeter-webhook"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small answers
        deadline = time.monotonic() + self.server.request_timeout_s
        self.rfile.close()  # the plain reader setup() made; reads go through the deadline instead
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line is not interesting; outcomes are logged in do_POST

    def _answer(self, outcome: Outcome) -> None:
        body = _body(outcome)
        self.connection.settimeout(self.server.request_timeout_s)  # reads may have left a shorter one
        self.send_response(outcome.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if outcome.status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        if self.server.log is not None:
            self.server.log(f"{outcome.status} {outcome.message}")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != WEBHOOK_PATH:
            self._answer(Outcome(404, "not found"))
            return
        length = content_length(self.headers.get_all("Content-Length") or [])
        if isinstance(length, Outcome):
            self._answer(length)
            return
        if "Transfer-Encoding" in self.headers:
            self._answer(Outcome(400, "Transfer-Encoding is not accepted; send Content-Length alone"))
            return
        try:
            payload = self.rfile.read(length)
        except TimeoutError:
            self._answer(Outcome(408, f"the body did not arrive within {self.server.request_timeout_s:g} s"))
            return
        if len(payload) != length:
            self._answer(Outcome(400, "the body is shorter than its Content-Length"))
            return
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
    lock_wait_s: float = 5.0,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    max_handlers: int = MAX_HANDLERS,
) -> WebhookServer:
    """A bound, not yet serving, webhook server (``port=0``: a free port)."""
    return WebhookServer(
        (host, port),
        database=database,
        secret=secret,
        lock_wait_s=lock_wait_s,
        request_timeout_s=request_timeout_s,
        max_handlers=max_handlers,
        log=log,
    )


def serve(database: Path, secret: str, *, host: str = "127.0.0.1", port: int = 8789) -> None:
    """Serve until interrupted (the CLI's ``gpumeter stripe webhook``)."""
    server = make_server(database, secret, host=host, port=port, log=lambda m: print(m, file=sys.stderr))
    print(f"listening on {server.url}", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
