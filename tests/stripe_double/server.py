"""A Stripe-compatible **test double**: a small stateful HTTP server for tests only.

It speaks the subset of Stripe's v1 REST API that ``billing.stripe`` uses, so that
tests can drive the real ``stripe`` SDK over real HTTP
(``stripe.StripeClient(key, base_addresses={"api": double.url})``). It is not Stripe and
not a mock of any one test: it keeps state, checks requests and answers as Stripe does.

Wire behaviour
- listens on 127.0.0.1, port 0 (a free port), HTTP/1.1, stdlib ``ThreadingHTTPServer``;
- auth: ``Authorization: Bearer sk_test_…`` (or HTTP basic with the key as user);
  live keys and unknown keys → 401; ``Stripe-Version`` accepted and echoed;
- bodies and query strings in Stripe's bracket encoding (:mod:`stripe_double.forms`);
- every route is checked against the SDK's own TypedDict (``stripe.params.*``) loaded
  at runtime (:mod:`stripe_double.params`): unknown parameter → 400; a parameter the SDK
  declares but the double does not implement → 400 with a message saying so (never
  silently ignored);
- errors use Stripe's envelope ``{"error": {"type", "message", "param", "code"}}``.

Idempotency, as Stripe does it for v1 POSTs: the ``Idempotency-Key`` header (≤ 255
chars) scoped per API key; a replay with the same endpoint and parameters returns the
first response — status and body — with ``Idempotent-Replayed: true``; another endpoint
or other parameters → 400 ``idempotency_error``. Results are saved once the endpoint ran
(successes and errors alike); requests refused before that (auth, unknown or malformed
parameters, injected "before" faults) save nothing. :meth:`StripeDouble.expire_idempotency_keys`
plays the 24 h expiry.

Routes: customers (create, retrieve, list, search), invoiceitems (create, retrieve, list),
invoices (create, retrieve, list, finalize, pay, void), credit_notes (create, retrieve,
list). Business rules are in :mod:`stripe_double.account`.

Test hooks: :meth:`fail_next` (an error before the request is processed, or ``mode="drop"``:
processed and saved, then the connection is closed unanswered — the SDK retries and gets
the replay), :meth:`fail_after` ("crash after N requests" until :meth:`heal`),
:meth:`decline_next_payment`, the request log :attr:`log`, the objects in :attr:`account`,
and :meth:`send_event` to POST a signed webhook event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

import stripe

from . import forms, params
from .account import Account, ApiError, Obj

_ID = r"([A-Za-z0-9_]+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    params_type: str  # name in stripe.params
    implemented: frozenset[str]  # top-level parameters the double implements
    run: Callable[[Account, tuple[str, ...], Obj], Obj]


def _route(method: str, path: str, params_type: str, implemented: str, run: Callable[..., Obj]) -> Route:
    return Route(method, re.compile(f"^{path}$"), params_type, frozenset(implemented.split()), run)


ROUTES: tuple[Route, ...] = (
    _route(
        "GET",
        "/v1/customers/search",
        "CustomerSearchParams",
        "query limit expand",
        lambda a, ids, p: a.search_customers(p),
    ),
    _route(
        "POST",
        "/v1/customers",
        "CustomerCreateParams",
        "address description email invoice_prefix metadata name phone preferred_locales tax_exempt expand",
        lambda a, ids, p: a.create_customer(p),
    ),
    _route(
        "GET", f"/v1/customers/{_ID}", "CustomerRetrieveParams", "expand", lambda a, ids, p: a.retrieve_customer(ids[0])
    ),
    _route(
        "GET",
        "/v1/customers",
        "CustomerListParams",
        "email limit starting_after expand",
        lambda a, ids, p: a.list_customers(p),
    ),
    _route(
        "POST",
        "/v1/invoiceitems",
        "InvoiceItemCreateParams",
        "amount currency customer description discountable invoice metadata period quantity "
        "quantity_decimal unit_amount_decimal expand",
        lambda a, ids, p: a.create_invoiceitem(p),
    ),
    _route(
        "GET",
        f"/v1/invoiceitems/{_ID}",
        "InvoiceItemRetrieveParams",
        "expand",
        lambda a, ids, p: a.retrieve_invoiceitem(ids[0]),
    ),
    _route(
        "GET",
        "/v1/invoiceitems",
        "InvoiceItemListParams",
        "customer invoice pending limit starting_after expand",
        lambda a, ids, p: a.list_invoiceitems(p),
    ),
    _route(
        "POST",
        "/v1/invoices",
        "InvoiceCreateParams",
        "auto_advance collection_method currency customer days_until_due description due_date footer "
        "metadata number pending_invoice_items_behavior expand",
        lambda a, ids, p: a.create_invoice(p),
    ),
    _route("GET", f"/v1/invoices/{_ID}", "InvoiceRetrieveParams", "expand", lambda a, ids, p: a._invoice(ids[0])),
    _route(
        "GET",
        "/v1/invoices",
        "InvoiceListParams",
        "customer status limit starting_after expand",
        lambda a, ids, p: a.list_invoices(p),
    ),
    _route(
        "POST",
        f"/v1/invoices/{_ID}/finalize",
        "InvoiceFinalizeInvoiceParams",
        "auto_advance expand",
        lambda a, ids, p: a.finalize_invoice(ids[0], p),
    ),
    _route(
        "POST",
        f"/v1/invoices/{_ID}/pay",
        "InvoicePayParams",
        "paid_out_of_band expand",
        lambda a, ids, p: a.pay_invoice(ids[0], p),
    ),
    _route(
        "POST",
        f"/v1/invoices/{_ID}/void",
        "InvoiceVoidInvoiceParams",
        "expand",
        lambda a, ids, p: a.void_invoice(ids[0]),
    ),
    _route(
        "POST",
        "/v1/credit_notes",
        "CreditNoteCreateParams",
        "amount credit_amount invoice lines memo metadata out_of_band_amount reason expand",
        lambda a, ids, p: a.create_credit_note(p),
    ),
    _route(
        "GET",
        f"/v1/credit_notes/{_ID}",
        "CreditNoteRetrieveParams",
        "expand",
        lambda a, ids, p: a.retrieve_credit_note(ids[0]),
    ),
    _route(
        "GET",
        "/v1/credit_notes",
        "CreditNoteListParams",
        "customer invoice limit starting_after expand",
        lambda a, ids, p: a.list_credit_notes(p),
    ),
)


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the double saw it (secrets reduced to the key's last 4 characters)."""

    seq: int
    method: str
    path: str
    params: Obj
    api_key_last4: str | None
    idempotency_key: str | None
    stripe_version: str | None
    status: int
    replayed: bool
    fault: str | None
    object_id: str | None


@dataclass
class _Saved:
    endpoint: str
    fingerprint: str
    status: int
    body: bytes


@dataclass
class _Fault:
    method: str | None
    path_prefix: str
    status: int
    mode: Literal["before", "drop"]
    remaining: int | None  # None: until heal()
    skip: int = 0  # let this many matching requests through first
    retryable: bool = True


@dataclass(frozen=True)
class EventDelivery:
    status: int
    body: str
    event_id: str
    payload: str
    signature: str


@dataclass
class StripeDouble:
    """The server. Use as a context manager, or call :meth:`start` / :meth:`close`."""

    api_keys: frozenset[str] | None = None  # None: any ``sk_test_``/``rk_test_`` key
    default_currency: str = "usd"
    log: list[LoggedRequest] = field(default_factory=list)
    account: Account = field(init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _saved: dict[tuple[str, str], _Saved] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    # Called with (request number, method, path) as each request arrives, before anything
    # else: a test can act at a known point (the fault suite SIGKILLs the client there).
    on_request: Callable[[int, str, str], None] | None = None
    _http: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.account = Account(clock=lambda: int(time.time()), default_currency=self.default_currency)

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> StripeDouble:
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="stripe-double", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> StripeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._http is not None, "start() the double first"
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---- test hooks ------------------------------------------------------------------
    def fail_next(
        self,
        path_prefix: str,
        *,
        status: int = 500,
        times: int = 1,
        method: str | None = "POST",
        mode: Literal["before", "drop"] = "before",
        retryable: bool = True,
    ) -> None:
        """Make the next ``times`` matching requests fail.

        ``before``: answer ``status`` without processing (nothing saved), as a proxy or
        overloaded front end would. ``drop``: process and save the result, then close the
        connection without an answer, as a network cut after the commit would.
        ``retryable=False`` adds ``Stripe-Should-Retry: false``.
        """
        with self._lock:
            self._faults.append(_Fault(method, path_prefix, status, mode, times, 0, retryable))

    def fail_after(
        self,
        n: int,
        *,
        status: int = 500,
        path_prefix: str = "/v1/",
        method: str | None = None,
        retryable: bool = False,
    ) -> None:
        """Crash after N requests: the first ``n`` matching requests pass, every later one
        fails with ``status`` (before processing) until :meth:`heal`."""
        with self._lock:
            self._faults.append(_Fault(method, path_prefix, status, "before", None, n, retryable))

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_idempotency_keys(self) -> None:
        """Forget every saved idempotent result, as Stripe does after 24 hours."""
        with self._lock:
            self._saved.clear()

    def decline_next_payment(self, times: int = 1) -> None:
        with self._lock:
            self.account.decline_payments += times

    def requests(self, method: str | None = None, path_prefix: str = "") -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method) and r.path.startswith(path_prefix)]

    def objects(self, kind: Literal["customers", "invoiceitems", "invoices", "credit_notes"]) -> list[Obj]:
        """Public JSON copies of every object of a kind, oldest first."""
        with self._lock:
            store: dict[str, Obj] = getattr(self.account, kind)
            return [self.account.public(o) for o in store.values()]

    def invoice(self, invoice_id: str) -> Obj:
        with self._lock:
            return self.account.render_invoice(self.account.invoices[invoice_id])

    # ---- webhooks --------------------------------------------------------------------
    @staticmethod
    def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
        """``Stripe-Signature``: ``t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<payload>")>``."""
        ts = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
        return f"t={ts},v1={mac}"

    def send_event(
        self,
        url: str,
        type: str,
        obj: Obj,
        secret: str,
        *,
        event_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        created: int | None = None,
    ) -> EventDelivery:
        """POST a signed event ``{"object": "event", "type", "data": {"object": obj}}`` to ``url``.

        ``timestamp`` is the signature's time (default now), ``created`` the event's;
        ``signature`` replaces the computed ``Stripe-Signature`` header.
        """
        with self._lock:
            eid = event_id or self.account._new_id("evt")
        event = {
            "id": eid,
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()) if created is None else created,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        payload = json.dumps(event, separators=(",", ":"))
        return self.deliver(url, payload, signature or self.sign(payload, secret, timestamp), event_id=eid)

    @staticmethod
    def deliver(url: str, payload: str, signature: str | None, *, event_id: str = "") -> EventDelivery:
        """POST exact bytes with a given ``Stripe-Signature`` (None: no header) — for replays."""
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+double)"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        req = urllib.request.Request(url, data=payload.encode(), headers=headers, method="POST")  # noqa: S310
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as resp:
                status, body = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        return EventDelivery(status, body, event_id, payload, signature or "")

    # ---- request handling (called by the HTTP handler) ----------------------------------
    def _auth(self, header: str | None) -> str:
        key = None
        if header and header.startswith("Bearer "):
            key = header[len("Bearer ") :].strip()
        elif header and header.startswith("Basic "):
            try:
                key = base64.b64decode(header[len("Basic ") :]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        if not key:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not key.startswith(("sk_test_", "rk_test_")) or (self.api_keys is not None and key not in self.api_keys):
            raise ApiError(401, f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}", code="api_key_invalid")
        return key

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, str], bytes | None]:
        """One request → (status, headers, body); body None means: close unanswered."""
        split = urlsplit(target)
        path = split.path
        if self.on_request is not None:
            with self._lock:
                arriving = len(self.log) + 1
            self.on_request(arriving, method, path)
        with self._lock:
            seq = len(self.log) + 1
            out_headers = {"Request-Id": f"req_dbl{seq:010d}"}
            if headers.get("stripe-version"):
                out_headers["Stripe-Version"] = headers["stripe-version"]
            idem = headers.get("idempotency-key") if method == "POST" else None
            if idem:
                out_headers["Idempotency-Key"] = idem
            raw: Obj = {}
            key: str | None = None
            replayed = False
            fault_name: str | None = None

            def finish(
                status: int, payload: Obj | bytes | None, object_id: str | None = None
            ) -> tuple[int, dict[str, str], bytes | None]:
                data = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
                self.log.append(
                    LoggedRequest(
                        seq,
                        method,
                        path,
                        raw,
                        key[-4:] if key else None,
                        idem,
                        headers.get("stripe-version"),
                        status,
                        replayed,
                        fault_name,
                        object_id,
                    )
                )
                return status, out_headers, data

            try:
                key = self._auth(headers.get("authorization"))
                route, ids = self._match(method, path)
                raw = forms.decode(body if method == "POST" else split.query)
                if idem is not None and len(idem) > 255:
                    raise ApiError(
                        400, "Idempotency-Key must be at most 255 characters.", code="idempotency_key_too_long"
                    )
                saved = self._saved.get((key, idem)) if idem else None
                endpoint = f"{method} {path}"
                fingerprint = json.dumps(raw, sort_keys=True)
                if saved is not None:
                    if saved.endpoint != endpoint:
                        raise ApiError(
                            400,
                            f"Keys for idempotent requests can only be used for the same endpoint they were first "
                            f"used for ('{saved.endpoint}'). Try using a key other than '{idem}' if you meant to "
                            f"execute a different request.",
                            type="idempotency_error",
                        )
                    if saved.fingerprint != fingerprint:
                        raise ApiError(
                            400,
                            f"Keys for idempotent requests can only be used with the same parameters they were "
                            f"first used with. Try using a key other than '{idem}' if you meant to execute a "
                            f"different request.",
                            type="idempotency_error",
                        )
                    replayed = True
                    out_headers["Idempotent-Replayed"] = "true"
                    return finish(saved.status, saved.body, _object_id(saved.body))
                fault = self._fault(method, path)
                if fault is not None and fault.mode == "before":
                    fault_name = f"before:{fault.status}"
                    if not fault.retryable:
                        out_headers["Stripe-Should-Retry"] = "false"
                    raise ApiError(fault.status, "stripe test double: injected fault", type="api_error")
                checked = self._check(route, raw)
            except forms.FormError as exc:
                return finish(400, ApiError(400, exc.message, param=exc.param).body)
            except params.ParamError as exc:
                return finish(400, ApiError(400, exc.message, param=exc.param).body)
            except ApiError as exc:
                return finish(exc.status, exc.body)

            try:
                result = route.run(self.account, ids, checked)
                status, payload = 200, self.account.public(result, checked.get("expand"))
            except ApiError as exc:
                status, payload = exc.status, exc.body
            except Exception as exc:  # a bug in the double: answer loudly, as Stripe's 500 would
                status, payload = 500, {"error": {"type": "api_error", "message": f"stripe test double bug: {exc!r}"}}
            data = json.dumps(payload).encode()
            if idem and key:
                self._saved[(key, idem)] = _Saved(endpoint, fingerprint, status, data)
            if fault is not None and fault.mode == "drop":
                fault_name = "drop"
                finish(status, data, _object_id(data))
                return status, out_headers, None
            return finish(status, data, _object_id(data))

    def _match(self, method: str, path: str) -> tuple[Route, tuple[str, ...]]:
        for route in ROUTES:
            m = route.pattern.match(path)
            if m and route.method == method:
                return route, m.groups()
        raise ApiError(404, f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _check(route: Route, raw: Obj) -> Obj:
        checked = params.check(raw, params.params_type(route.params_type))
        for name in checked:
            if name not in route.implemented:
                raise ApiError(
                    400,
                    f"stripe test double: parameter {name!r} is declared by stripe.params.{route.params_type} "
                    f"but not implemented by this double",
                    param=name,
                    code="double_unsupported_parameter",
                )
        return checked

    def _fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if (fault.method is None or fault.method == method) and path.startswith(fault.path_prefix):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None


def _object_id(data: bytes) -> str | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    oid = obj.get("id") if isinstance(obj, dict) else None
    return oid if isinstance(oid, str) else None


class _Handler(BaseHTTPRequestHandler):
    double: StripeDouble
    protocol_version = "HTTP/1.1"
    server_version = "stripe-double/1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, data = self.double.handle(method, self.path, headers, body)
        if data is None:
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
