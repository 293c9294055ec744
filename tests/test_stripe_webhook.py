"""billing.stripe_webhook: signed events from the Stripe double, over HTTP, into the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.stripe_sync import payment_status, sync_month
from billing.stripe_webhook import WebhookServer, make_server
from gpumeter import store
from testing.stores import new_store
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import H100, add_tenants, invoice_json, make_client, write_document

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
    write_document(root, invoice_json("GM-2026-000001", "acme", MONTH, [(H100, None, "10", "2.80")]))
    write_document(root, invoice_json("GM-2026-000002", "bauer", MONTH, [(H100, None, "5", "2.80")]))
    sync_month(con, make_client(stripe_double), MONTH, invoices_dir=root, audit=None)
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
