"""A budget-alert receiver for tests: a real HTTP server on 127.0.0.1 that checks what it gets.

It verifies what a receiver relies on, independently of gpumeter's code: the HMAC-SHA256 of
the exact body bytes in ``X-Gpumeter-Signature``, the structured-mode Content-Type, and the
CloudEvents 1.0 attributes. Its answers are scripted per request (``answers``: an HTTP status,
or :data:`HANG` to hold the request without ever answering); once the script is used up it
answers 200. It deduplicates by event ``id`` as a receiver should, and keeps everything it
saw for the test to inspect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = -1
"""A scripted answer: hold the request until the receiver stops, then drop it unanswered."""

ATTRIBUTES = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}


@dataclass
class Delivery:
    """One request the receiver got."""

    body: bytes
    headers: dict[str, str]
    answered: int | None  # the status it answered, None when it held the request
    problems: list[str]

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    secret: str
    answers: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    got_request: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/budget"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Each distinct event answered 2xx, in order (a receiver deduplicating by id)."""
        seen: dict[str, dict[str, Any]] = {}
        for d in self.deliveries:
            if d.answered is not None and 200 <= d.answered < 300 and d.event["id"] not in seen:
                seen[d.event["id"]] = d.event
        return list(seen.values())

    def problems(self) -> list[str]:
        return [p for d in self.deliveries for p in d.problems]

    def check(self, body: bytes, headers: dict[str, str]) -> list[str]:
        problems = []
        want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-gpumeter-signature", ""), want):
            problems.append("signature does not match the body")
        if headers.get("content-type", "").split(";")[0].strip() != "application/cloudevents+json":
            problems.append(f"content type {headers.get('content-type')!r}")
        try:
            event = json.loads(body)
        except ValueError:
            return [*problems, "body is not JSON"]
        if not isinstance(event, dict):
            return [*problems, "body is not a JSON object"]
        if set(event) - ATTRIBUTES:
            problems.append(f"unexpected attributes {sorted(set(event) - ATTRIBUTES)}")
        if event.get("specversion") != "1.0":
            problems.append("specversion is not 1.0")
        for name in ("id", "source", "type", "time"):
            if not isinstance(event.get(name), str) or not event[name]:
                problems.append(f"{name} missing")
        if event.get("type") != "eu.gpumeter.budget.threshold":
            problems.append(f"type {event.get('type')!r}")
        if event.get("datacontenttype") != "application/json":
            problems.append("datacontenttype is not application/json")
        time = event.get("time", "")
        if not isinstance(time, str) or not time.endswith("Z") or datetime.fromisoformat(time).utcoffset() is None:
            problems.append(f"time {time!r} is not RFC 3339 UTC")
        data = event.get("data")
        if not isinstance(data, dict) or not {"tenant", "month", "threshold_percent", "budget", "net"} <= set(data):
            problems.append(f"data {data!r} lacks a documented field")
        return problems


@contextmanager
def receiving(secret: str, *, port: int = 0, answers: list[int] | None = None) -> Iterator[Receiver]:
    """Run a :class:`Receiver` on 127.0.0.1 (``port`` 0: a free one) until the block ends."""
    receiver = Receiver(secret, list(answers or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                answer = receiver.answers.pop(0) if receiver.answers else 200
                problems = receiver.check(body, headers)
                if problems and answer != HANG:
                    answer = 400
                receiver.deliveries.append(Delivery(body, headers, None if answer == HANG else answer, problems))
            receiver.got_request.set()
            if answer == HANG:
                receiver.release.wait(60)
                self.close_connection = True
                return
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
