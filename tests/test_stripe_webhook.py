"""billing.stripe.webhook: signed events from the Stripe double, over HTTP, into the store."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.stripe.payments import payment_status
from billing.stripe.sync import sync_month
from billing.stripe.webhook import WebhookServer, make_server
from gpumeter import store
from testing.stores import new_store
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import H100, add_tenants, invoice_json, make_client, write_document
from tests.stripe_double.processes import WebhookProcess, webhook_command

pytest_plugins = ["tests.stripe_double.fixtures"]

SECRET = "whsec_test_gpumeter_0001"
MONTH = "2026-01"


@pytest.fixture
def database(tmp_path: Path, stripe_double: StripeDouble) -> Path:
    """A store file where GM-2026-000001 (acme) and GM-2026-000002 (bauer) were synced."""
    db = tmp_path / "g.duckdb"
    con = new_store(db)
    add_tenants(con)
    root = tmp_path / "invoices"
    write_document(con, root, invoice_json("GM-2026-000001", "acme", MONTH, [(H100, None, "10", "2.80")]))
    write_document(con, root, invoice_json("GM-2026-000002", "bauer", MONTH, [(H100, None, "5", "2.80")]))
    sync_month(con, make_client(stripe_double), MONTH, audit=None)
    con.close()
    return db


@pytest.fixture
def webhook(database: Path) -> Iterator[WebhookServer]:
    server = make_server(database, SECRET, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def read(database: Path, sql: str) -> list[tuple[Any, ...]]:
    con = store.connect(database)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def status(database: Path) -> dict[str, str]:
    con = store.connect(database)
    try:
        return {r[0]: r[2] for r in payment_status(con, MONTH).rows()}
    finally:
        con.close()


def invoice(double: StripeDouble, number: str) -> dict[str, Any]:
    return next(i for i in double.objects("invoices") if i["number"] == number)


def test_paid_event_is_recorded(webhook: WebhookServer, stripe_double: StripeDouble, database: Path) -> None:
    inv = invoice(stripe_double, "GM-2026-000001")
    assert status(database) == {"GM-2026-000001": "open", "GM-2026-000002": "open"}
    sent = stripe_double.send_event(webhook.url, "invoice.paid", inv, SECRET)
    assert sent.status == 200 and '"ok": true' in sent.body
    assert status(database) == {"GM-2026-000001": "paid", "GM-2026-000002": "open"}
    rows = read(database, "SELECT event_id, type, stripe_id, number, created_at FROM stripe_events")
    assert [r[:4] for r in rows] == [(sent.event_id, "invoice.paid", inv["id"], "GM-2026-000001")]
    assert rows[0][4].utcoffset().total_seconds() == 0


@pytest.mark.parametrize("how", ["wrong-secret", "no-header", "tampered-body", "stale", "garbage-header"])
def test_bad_signature_is_refused_and_nothing_recorded(
    webhook: WebhookServer, stripe_double: StripeDouble, database: Path, how: str
) -> None:
    inv = invoice(stripe_double, "GM-2026-000001")
    if how == "wrong-secret":
        sent = stripe_double.send_event(webhook.url, "invoice.paid", inv, "whsec_not_ours")
    elif how == "stale":  # a captured delivery replayed 10 minutes later
        sent = stripe_double.send_event(webhook.url, "invoice.paid", inv, SECRET, timestamp=int(time.time()) - 600)
    elif how == "garbage-header":
        sent = stripe_double.send_event(webhook.url, "invoice.paid", inv, SECRET, signature="t=abc,v1=00")
    else:
        good = stripe_double.send_event(webhook.url, "customer.created", {"id": "cus_1"}, SECRET)
        payload = good.payload.replace("customer.created", "invoice.paid").replace('"cus_1"', f'"{inv["id"]}"')
        sent = StripeDouble.deliver(webhook.url, payload, None if how == "no-header" else good.signature)
    assert sent.status == 400
    assert read(database, "SELECT count(*) FROM stripe_events") == [(0,)]
    assert status(database)["GM-2026-000001"] == "open"


def test_replayed_event_is_recorded_once(webhook: WebhookServer, stripe_double: StripeDouble, database: Path) -> None:
    inv = invoice(stripe_double, "GM-2026-000002")
    first = stripe_double.send_event(webhook.url, "invoice.payment_failed", inv, SECRET)
    # Stripe retries with the same event id and a fresh signature; an attacker replays bytes as captured.
    retry = stripe_double.send_event(webhook.url, "invoice.payment_failed", inv, SECRET, event_id=first.event_id)
    replay = StripeDouble.deliver(webhook.url, first.payload, first.signature)
    assert [first.status, retry.status, replay.status] == [200, 200, 200]
    assert "duplicate" in retry.body and "duplicate" in replay.body
    assert read(database, "SELECT count(*), min(event_id) FROM stripe_events") == [(1, first.event_id)]
    assert status(database)["GM-2026-000002"] == "payment_failed"


def test_events_apply_in_stripe_time_order(webhook: WebhookServer, stripe_double: StripeDouble, database: Path) -> None:
    inv = invoice(stripe_double, "GM-2026-000001")
    now = int(time.time())
    assert stripe_double.send_event(webhook.url, "invoice.paid", inv, SECRET, created=now).status == 200
    late = stripe_double.send_event(webhook.url, "invoice.payment_failed", inv, SECRET, created=now - 60)
    assert late.status == 200
    assert read(database, "SELECT count(*) FROM stripe_events") == [(2,)]
    assert status(database)["GM-2026-000001"] == "paid"


def test_other_events_and_paths(webhook: WebhookServer, stripe_double: StripeDouble, database: Path) -> None:
    ignored = stripe_double.send_event(webhook.url, "customer.created", {"id": "cus_1", "object": "customer"}, SECRET)
    assert ignored.status == 200 and "ignored" in ignored.body
    stranger = {"id": "in_unknown", "object": "invoice", "metadata": {"gpumeter_invoice": "GM-2025-000007"}}
    assert stripe_double.send_event(webhook.url, "invoice.paid", stranger, SECRET).status == 200
    assert read(database, "SELECT number FROM stripe_events") == [("GM-2025-000007",)]
    elsewhere = stripe_double.send_event(webhook.url.replace("/stripe/webhook", "/other"), "invoice.paid", {}, SECRET)
    assert elsewhere.status == 404
    assert set(status(database).values()) == {"open"}


# --- hostile clients: bounded memory, time and threads; the store only for verified events ----------


def raw_request(port: int, head: bytes, body: bytes = b"", *, wait_s: float = 10.0) -> bytes:
    """Send bytes as they are (no client-side HTTP rules) and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head + body)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def post_head(length: str | None, *, signature: str = "t=1,v1=00", extra: str = "") -> bytes:
    lines = ["POST /stripe/webhook HTTP/1.1", "Host: 127.0.0.1", f"Stripe-Signature: {signature}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.fixture
def served(database: Path, tmp_path: Path) -> Iterator[WebhookProcess]:
    """``gpumeter stripe webhook`` in its own process, so that its memory can be measured."""
    config = tmp_path / "gpumeter.toml"
    config.write_text(f'[store]\ndatabase = "{database.as_posix()}"\n', encoding="utf-8")
    with webhook_command(config, SECRET) as process:
        yield process


def test_negative_content_length_is_refused_and_memory_stays_bounded(served: WebhookProcess) -> None:
    """``Content-Length: -1`` once made the server read the whole body, however large, into memory."""
    pid, port = served.proc.pid, served.port
    before = peak_rss_kib(pid)
    chunk = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(post_head("-1"))

        def stream() -> None:  # 128 MiB, then end of input; the server may close on us first
            try:
                for _ in range(128):
                    sock.sendall(chunk)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        answer = read_answer(sock)
        sender.join(timeout=30)
    assert status_of(answer) == 400, answer[:200]
    assert b"Content-Length" in answer
    grown_mib = (peak_rss_kib(pid) - before) / 1024
    assert grown_mib < 16, f"the server's peak RSS grew by {grown_mib:.0f} MiB"


@pytest.mark.parametrize(
    ("length", "extra", "status"),
    [
        (None, "", 411),
        ("abc", "", 400),
        ("+5", "", 400),
        ("1_0", "", 400),
        ("-0", "", 400),
        (str((1 << 20) + 1), "", 413),
        ("10", "Content-Length: 12\r\n", 400),
    ],
    ids=["missing", "not-a-number", "signed", "underscore", "minus-zero", "over-1-MiB", "two-lengths"],
)
def test_bad_content_length_is_refused_before_reading(
    webhook: WebhookServer, length: str | None, extra: str, status: int
) -> None:
    port = webhook.server_address[1]
    answer = raw_request(port, post_head(length, extra=extra))
    assert status_of(answer) == status, answer[:200]


def test_a_silent_client_is_dropped_and_others_are_still_served(database: Path, stripe_double: StripeDouble) -> None:
    """A client that declares 10 bytes and sends none once held its thread for ever."""
    server = make_server(database, SECRET, port=0, request_timeout_s=1.0, max_handlers=4)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=6) as silent:
            silent.sendall(post_head("10"))
            started = time.monotonic()
            sent = stripe_double.send_event(
                server.url, "invoice.paid", invoice(stripe_double, "GM-2026-000001"), SECRET
            )
            assert sent.status == 200 and time.monotonic() - started < 1.0
            answer = read_answer(silent)  # the server's 408, or its closing: either way, not a hang
            waited = time.monotonic() - started
        assert status_of(answer) in (0, 408), answer[:200]
        assert waited < 3.0, f"the silent client was held {waited:.1f} s"
    finally:
        server.shutdown()
        server.server_close()
    assert status(database)["GM-2026-000001"] == "paid"


def test_concurrent_handlers_are_bounded(database: Path, stripe_double: StripeDouble) -> None:
    """Past ``max_handlers`` open requests, a new connection is answered 503 at once, not queued."""
    server = make_server(database, SECRET, port=0, request_timeout_s=1.5, max_handlers=2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    inv = invoice(stripe_double, "GM-2026-000001")
    try:
        port = server.server_address[1]
        slow = [socket.create_connection(("127.0.0.1", port), timeout=6) for _ in range(2)]
        try:
            for sock in slow:
                sock.sendall(post_head("10"))
            started = time.monotonic()
            busy = raw_request(port, post_head("2"), b"{}")
            assert status_of(busy) == 503 and b"retry later" in busy, busy[:200]
            assert time.monotonic() - started < 1.0
            for sock in slow:
                assert status_of(read_answer(sock)) in (0, 408)
        finally:
            for sock in slow:
                sock.close()
        assert stripe_double.send_event(server.url, "invoice.paid", inv, SECRET).status == 200
    finally:
        server.shutdown()
        server.server_close()
    assert status(database)["GM-2026-000001"] == "paid"


def test_a_bad_signature_never_opens_the_store(
    webhook: WebhookServer, stripe_double: StripeDouble, database: Path
) -> None:
    """Another process holds DuckDB's write lock; unverified requests are still answered at once."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(database),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            inv = invoice(stripe_double, "GM-2026-000001")
            for _ in range(3):
                started = time.monotonic()
                refused = stripe_double.send_event(webhook.url, "invoice.paid", inv, "whsec_not_ours")
                assert refused.status == 400 and "signature" in refused.body
                assert time.monotonic() - started < 1.0
            started = time.monotonic()
            ignored = stripe_double.send_event(webhook.url, "customer.created", {"id": "cus_1"}, SECRET)
            assert ignored.status == 200 and time.monotonic() - started < 1.0
            # The lock is real: a verified payment event cannot be recorded while it is held.
            assert stripe_double.send_event(webhook.url, "invoice.paid", inv, SECRET).status == 503
        finally:
            holder.kill()  # the lock holder, started above
    assert status(database)["GM-2026-000001"] == "open"
