"""billing.stripe: the real stripe SDK over HTTP against the Stripe test double."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import pytest
import stripe

from audit.log import AuditLog
from billing.errors import StripeRequestError, StripeSyncError, StripeTotalMismatch
from billing.stripe.payments import payment_status
from billing.stripe.plan import MAX_ITEMS_PER_INVOICE
from billing.stripe.sync import SyncReport, sync_month
from gpumeter import store
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import (
    A100,
    H100,
    TENANTS,
    add_tenants,
    cents,
    invoice_json,
    make_client,
    sha256,
    write_document,
)

pytest_plugins = ["tests.stripe_double.fixtures"]

MONTH = "2026-01"
LINES = [(H100, None, "123.456789", "2.80"), (H100, "3g.40gb", "10.000001", "1.20"), (A100, None, "7.5", "1.90")]


class Crash(BaseException):
    """The process dying: not an Exception, so nothing on the way catches it."""


def sync(con: duckdb.DuckDBPyConnection, client: stripe.StripeClient, **kw: Any) -> SyncReport:
    """One run with the real audit log; checks it holds one stripe_sync entry per document pushed."""
    report = sync_month(con, client, MONTH, **kw)
    log = AuditLog(con)
    for doc in report.documents:
        found = log.latest("stripe_sync", doc.number, MONTH)
        assert found is not None, doc.number
        entry = json.loads(found[1])
        assert entry["result"] == {
            "stripe_id": doc.stripe_id,
            "status": entry["result"]["status"],
            "total": f"{Decimal(doc.stripe_total_cents) / 100:.2f}",
        }
    pushed = {d.number for d in report.documents}
    assert len(log.subjects("stripe_sync", MONTH)) >= len(pushed)
    return report


def crash_after(monkeypatch: pytest.MonkeyPatch, service: Any, method: str, n: int) -> None:
    """Let the n-th call reach Stripe and get its answer, then die before it is recorded."""
    real = getattr(service, method)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(f"crash after {method} #{n}")
        return out

    monkeypatch.setattr(service, method, wrapper)


def posts(double: StripeDouble, prefix: str = "/v1/") -> int:
    return len(double.requests("POST", prefix))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "invoices"


def test_sync_creates_customer_invoice_items_and_finalizes(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    doc = invoice_json("GM-2026-000001", "acme", MONTH, LINES)
    write_document(stripe_store, root, doc)
    write_document(stripe_store, root, {**doc, "number": None, "status": "draft"} | {"lines": []}).rename(
        root / MONTH / "draft-acme.json"
    )
    report = sync(stripe_store, stripe_client)

    (result,) = report.documents
    assert result.action == "created" and result.stripe_status == "open"
    assert result.stripe_total_cents == result.total_cents == cents(doc["total"])

    (customer,) = stripe_double.objects("customers")
    assert customer["metadata"] == {"gpumeter_tenant": "acme"}
    assert customer["name"] is None and customer["email"] is None and customer["address"] is None
    (invoice,) = stripe_double.objects("invoices")
    assert invoice["number"] == "GM-2026-000001" and invoice["status"] == "open"
    assert invoice["currency"] == "eur" and invoice["collection_method"] == "send_invoice"
    assert invoice["auto_advance"] is False and invoice["days_until_due"] == 30
    assert invoice["total"] == cents(doc["total"]) and invoice["customer"] == customer["id"]
    assert invoice["metadata"]["gpumeter_invoice"] == "GM-2026-000001"

    items = stripe_double.objects("invoiceitems")
    assert [i["amount"] for i in items] == [cents(ln["amount"]) for ln in doc["lines"]] + [cents(doc["vat"])]
    assert all(i["invoice"] == invoice["id"] and i["currency"] == "eur" for i in items)
    assert items[0]["metadata"]["gpu_hours"] == "123.456789" and items[0]["metadata"]["unit_price_eur"] == "2.80"
    assert "123.456789 GPU-hours" in items[0]["description"] and items[1]["metadata"]["mig_profile"] == "3g.40gb"
    assert items[-1]["metadata"]["gpumeter_line"] == "vat"

    (create,) = stripe_double.requests("POST", "/v1/invoices")[:1]
    assert create.params["pending_invoice_items_behavior"] == "exclude"
    keys = [r.idempotency_key for r in stripe_double.requests("POST")]
    assert keys == [
        "gpumeter:customer:acme",
        "gpumeter:GM-2026-000001:invoice",
        "gpumeter:GM-2026-000001:item:1",
        "gpumeter:GM-2026-000001:item:2",
        "gpumeter:GM-2026-000001:item:3",
        "gpumeter:GM-2026-000001:item:vat",
        "gpumeter:GM-2026-000001:finalize",
    ]

    # Every request is in the store, with its key, object and amount; times in UTC.
    rows = stripe_store.execute(
        "SELECT method, path, idempotency_key, stripe_object_id, amount_cents, outcome, sent_at FROM stripe_requests "
        "ORDER BY id"
    ).fetchall()
    assert len(rows) == len(stripe_double.log) == report.requests
    assert [r[2] for r in rows if r[0] == "POST"] == keys
    assert all(r[5] == "ok" and r[6].tzinfo is not None and r[6].utcoffset().total_seconds() == 0 for r in rows)
    assert sum(r[4] for r in rows if r[1] == "/v1/invoiceitems") == cents(doc["total"])
    frame = payment_status(stripe_store, MONTH)
    assert frame.columns == ["number", "stripe_invoice_id", "status", "amount", "updated_at"]
    assert frame.rows() == [("GM-2026-000001", invoice["id"], "open", Decimal(doc["total"]), frame["updated_at"][0])]


def test_only_amounts_numbers_and_tenant_ids_leave_the_store(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    for i, tenant in enumerate(TENANTS, start=1):
        write_document(stripe_store, root, invoice_json(f"GM-2026-00000{i}", tenant, MONTH, LINES))
    sync(stripe_store, stripe_client)
    sent = json.dumps([r.params for r in stripe_double.log])
    for name, _country, vat_id, email, address in TENANTS.values():
        for secret in (name, email, address, *([vat_id] if vat_id else [])):
            assert secret not in sent


def test_rerun_sends_nothing_new(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "acme", MONTH, LINES))
    write_document(stripe_store, root, invoice_json("GM-2026-000002", "bauer", MONTH, LINES[:1]))
    sync(stripe_store, stripe_client)
    kinds: tuple[Literal["customers", "invoices", "invoiceitems"], ...] = ("customers", "invoices", "invoiceitems")
    before = {k: len(stripe_double.objects(k)) for k in kinds}
    sent = posts(stripe_double)

    report = sync(stripe_store, stripe_client)

    assert [d.action for d in report.documents] == ["unchanged", "unchanged"]
    assert report.posts == 0 and posts(stripe_double) == sent
    assert (
        {k: len(stripe_double.objects(k)) for k in kinds}
        == before
        == {"customers": 2, "invoices": 2, "invoiceitems": 5}
    )


def test_pending_items_of_the_customer_are_not_pulled_in(
    stripe_double: StripeDouble, stripe_client: stripe.StripeClient, root: Path
) -> None:
    """tenants.csv names an existing Stripe customer that has a stray pending item."""
    cus = stripe_client.v1.customers.create(params={"metadata": {"crm": "x"}})
    stray = stripe_client.v1.invoice_items.create(params={"customer": cus.id, "amount": 999, "currency": "eur"})
    con = store.memory()
    add_tenants(con, {"acme": cus.id})
    doc = invoice_json("GM-2026-000001", "acme", MONTH, LINES)
    write_document(con, root, doc)

    report = sync(con, stripe_client)

    assert report.documents[0].stripe_total_cents == cents(doc["total"])
    assert len(stripe_double.requests("POST", "/v1/customers")) == 1  # only the test's own
    assert stripe_client.v1.invoice_items.retrieve(stray.id).invoice is None


@pytest.mark.parametrize(
    ("service", "method", "n"),
    [
        ("customers", "create", 1),
        ("invoices", "create", 1),
        ("invoice_items", "create", 1),
        ("invoice_items", "create", 3),
        ("invoice_items", "create", 4),
        ("invoices", "finalize_invoice", 1),
    ],
)
@pytest.mark.parametrize("keys_expired", [False, True], ids=["within-24h", "keys-expired"])
def test_crash_and_rerun_never_duplicates(
    stripe_store: duckdb.DuckDBPyConnection,
    stripe_double: StripeDouble,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    method: str,
    n: int,
    keys_expired: bool,
) -> None:
    doc = invoice_json("GM-2026-000001", "acme", MONTH, LINES)
    write_document(stripe_store, root, doc)
    dying = make_client(stripe_double)
    crash_after(monkeypatch, getattr(dying.v1, service), method, n)
    with pytest.raises(Crash):
        sync_month(stripe_store, dying, MONTH, audit=None)
    if keys_expired:
        stripe_double.expire_idempotency_keys()  # as if the re-run came more than 24 h later

    report = sync(stripe_store, make_client(stripe_double))

    # a crash before the invoice existed leaves nothing to resume: the customer is simply found
    assert report.documents[0].action == ("created" if service == "customers" else "resumed")
    assert report.documents[0].stripe_total_cents == cents(doc["total"])
    assert len(stripe_double.objects("customers")) == 1
    (invoice,) = stripe_double.objects("invoices")
    assert invoice["status"] == "open" and invoice["total"] == cents(doc["total"])
    items = stripe_double.objects("invoiceitems")
    assert sorted(i["metadata"]["gpumeter_line"] for i in items) == ["1", "2", "3", "vat"]
    assert len(stripe_double.requests("POST", f"/v1/invoices/{invoice['id']}/finalize")) == 1
    done = {r[0] for r in stripe_store.execute("SELECT step FROM stripe_steps").fetchall()}
    assert done == {"invoice", "item:1", "item:2", "item:3", "item:vat", "finalize"}
    # Again: nothing more.
    sent = posts(stripe_double)
    assert sync(stripe_store, make_client(stripe_double)).documents[0].action == "unchanged"
    assert posts(stripe_double) == sent


def test_transient_5xx_is_retried_with_the_same_key(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "acme", MONTH, LINES))
    stripe_double.fail_next("/v1/invoiceitems", status=503)  # refused before Stripe ran it
    stripe_double.fail_next("/v1/invoices/", mode="drop")  # finalize ran, the answer was lost

    report = sync(stripe_store, stripe_client)

    assert report.documents[0].stripe_status == "open"
    assert len(stripe_double.objects("invoiceitems")) == 4
    item_posts = stripe_double.requests("POST", "/v1/invoiceitems")
    assert [r.status for r in item_posts[:2]] == [503, 200]
    assert item_posts[0].idempotency_key == item_posts[1].idempotency_key
    finalize = [r for r in stripe_double.requests("POST", "/v1/invoices/") if r.path.endswith("/finalize")]
    assert [(r.fault, r.replayed) for r in finalize] == [("drop", False), (None, True)]


def test_outage_after_n_requests_then_rerun(
    stripe_store: duckdb.DuckDBPyConnection, stripe_double: StripeDouble, root: Path
) -> None:
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "acme", MONTH, LINES))
    write_document(stripe_store, root, invoice_json("GM-2026-000002", "globex", MONTH, LINES))
    stripe_double.fail_after(14, status=503)  # acme's 10 requests, then globex's first 4
    with pytest.raises(StripeRequestError, match=r"503|refused"):
        sync(stripe_store, make_client(stripe_double, retries=0))
    failed = stripe_store.execute("SELECT count(*) FROM stripe_requests WHERE outcome = 'error'").fetchone()
    assert failed == (1,)
    stripe_double.heal()

    report = sync(stripe_store, make_client(stripe_double))

    assert [d.action for d in report.documents] == ["unchanged", "resumed"]
    assert len(stripe_double.objects("invoices")) == 2
    assert len(stripe_double.objects("invoiceitems")) == 4 + 3


@pytest.mark.parametrize(
    ("tenant", "n_lines"),
    [("acme", MAX_ITEMS_PER_INVOICE), ("globex", MAX_ITEMS_PER_INVOICE + 1)],
    ids=["250-lines+vat", "251-lines"],
)
def test_more_than_250_items_is_refused_before_anything_is_sent(
    stripe_store: duckdb.DuckDBPyConnection,
    stripe_client: stripe.StripeClient,
    stripe_double: StripeDouble,
    root: Path,
    tenant: str,
    n_lines: int,
) -> None:
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "bauer", MONTH, LINES))  # a good one, first
    lines = [(f"GPU model {i:03d}", None, "1.5", "2.00") for i in range(n_lines)]
    write_document(stripe_store, root, invoice_json("GM-2026-000002", tenant, MONTH, lines))
    with pytest.raises(StripeSyncError, match="exceed Stripe's 250 per invoice; nothing was sent"):
        sync(stripe_store, stripe_client)
    assert stripe_double.log == []
    assert stripe_store.execute("SELECT count(*) FROM stripe_requests").fetchone() == (0,)


def test_exactly_250_items_fit_on_one_invoice(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    lines = [(f"GPU model {i:03d}", None, "1.5", "2.01") for i in range(MAX_ITEMS_PER_INVOICE - 1)]
    doc = invoice_json("GM-2026-000001", "acme", MONTH, lines)
    write_document(stripe_store, root, doc)
    report = sync(stripe_store, stripe_client)
    assert report.documents[0].stripe_total_cents == cents(doc["total"])
    assert len(stripe_double.objects("invoiceitems")) == MAX_ITEMS_PER_INVOICE


@pytest.mark.parametrize(
    ("tenant", "vat_item", "footer"),
    [("acme", True, None), ("bauer", False, "Reverse charge"), ("globex", False, "outside the scope of EU VAT")],
    ids=["domestic", "reverse_charge", "outside_scope"],
)
def test_vat_treatments(
    stripe_store: duckdb.DuckDBPyConnection,
    stripe_client: stripe.StripeClient,
    stripe_double: StripeDouble,
    root: Path,
    tenant: str,
    vat_item: bool,
    footer: str | None,
) -> None:
    doc = invoice_json("GM-2026-000001", tenant, MONTH, LINES)
    write_document(stripe_store, root, doc)
    report = sync(stripe_store, stripe_client)
    (invoice,) = stripe_double.objects("invoices")
    items = stripe_double.objects("invoiceitems")
    assert ("vat" in [i["metadata"]["gpumeter_line"] for i in items]) is vat_item
    assert len(items) == len(LINES) + vat_item
    assert invoice["total"] == report.documents[0].stripe_total_cents == cents(doc["total"])
    assert invoice["metadata"]["gpumeter_vat_treatment"] == doc["vat_treatment"]
    if footer is None:
        assert invoice["footer"] is None
        assert items[-1]["amount"] == cents(doc["vat"]) > 0 and "VAT 20.00 %" in items[-1]["description"]
    else:
        assert footer in invoice["footer"]


def test_credit_note_after_late_usage(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    original = invoice_json("GM-2026-000001", "acme", MONTH, LINES)
    paid = invoice_json("GM-2026-000002", "bauer", MONTH, LINES)
    write_document(stripe_store, root, original)
    write_document(stripe_store, root, paid)
    sync(stripe_store, stripe_client)
    bauer_invoice = next(i for i in stripe_double.objects("invoices") if i["number"] == "GM-2026-000002")
    stripe_client.v1.invoices.pay(bauer_invoice["id"], params={"paid_out_of_band": True})

    # Late telemetry re-rates January: the H100 line of acme was 10 h too high, the A100
    # line 2 h too low -> a credit note and a supplementary invoice; bauer's (paid) H100
    # line was 1 h too high -> a credit note credited to its Stripe balance.
    credit = invoice_json(
        "GMC-2026-000001",
        "acme",
        MONTH,
        [(H100, None, "10.000000", "2.80")],
        kind="credit_note",
        references="GM-2026-000001",
    )
    extra = invoice_json(
        "GM-2026-000003", "acme", MONTH, [(A100, None, "2.000000", "1.90")], references="GM-2026-000001"
    )
    credit_paid = invoice_json(
        "GMC-2026-000002",
        "bauer",
        MONTH,
        [(H100, None, "1.000000", "2.80")],
        kind="credit_note",
        references="GM-2026-000002",
    )
    for doc in (credit, extra, credit_paid):
        write_document(stripe_store, root, doc)
    sent_for_original = len(stripe_double.requests("POST", "/v1/invoices/"))

    report = sync(stripe_store, stripe_client)

    actions = {d.number: d.action for d in report.documents}
    assert actions == {
        "GM-2026-000001": "unchanged",
        "GM-2026-000002": "unchanged",
        "GM-2026-000003": "created",
        "GMC-2026-000001": "created",
        "GMC-2026-000002": "created",
    }
    assert len(stripe_double.requests("POST", "/v1/invoices/")) == sent_for_original + 1  # GM-…-3's finalize only
    notes = {n["metadata"]["gpumeter_credit_note"]: n for n in stripe_double.objects("credit_notes")}
    acme_invoice = next(i for i in stripe_double.objects("invoices") if i["number"] == "GM-2026-000001")
    assert notes["GMC-2026-000001"]["invoice"] == acme_invoice["id"]
    assert notes["GMC-2026-000001"]["total"] == cents(credit["total"]) == 2800 + 560
    assert notes["GMC-2026-000001"]["type"] == "pre_payment"
    assert acme_invoice["amount_remaining"] == cents(original["total"]) - cents(credit["total"])
    assert notes["GMC-2026-000002"]["type"] == "post_payment"
    assert notes["GMC-2026-000002"]["total"] == cents(credit_paid["total"]) == 280
    bauer = next(c for c in stripe_double.objects("customers") if c["metadata"]["gpumeter_tenant"] == "bauer")
    assert bauer["balance"] == -280

    frame = {r[0]: r for r in payment_status(stripe_store, MONTH).rows()}
    assert frame["GMC-2026-000001"][2:4] == ("issued", -Decimal(credit["total"]))
    assert frame["GM-2026-000002"][2] == "paid" and frame["GM-2026-000003"][2] == "open"
    # And once more: nothing new.
    sent = posts(stripe_double)
    assert {d.action for d in sync(stripe_store, stripe_client).documents} == {"unchanged"}
    assert posts(stripe_double) == sent


def test_credit_note_for_an_invoice_never_synced_is_refused_up_front(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "acme", MONTH, LINES))
    write_document(
        stripe_store,
        root,
        invoice_json("GMC-2026-000001", "acme", MONTH, LINES[:1], kind="credit_note", references="GM-2025-000099"),
    )
    with pytest.raises(StripeSyncError, match=r"GM-2025-000099.*nothing was sent"):
        sync(stripe_store, stripe_client)
    assert stripe_double.log == []


def test_reused_idempotency_key_with_other_parameters_is_surfaced(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    # Someone else already used gpumeter's key for this tenant, with other parameters.
    stripe_client.v1.customers.create(
        params={"metadata": {"gpumeter_tenant": "not-acme"}}, options={"idempotency_key": "gpumeter:customer:acme"}
    )
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "acme", MONTH, LINES))
    with pytest.raises(StripeRequestError, match="idempotency key reused with other parameters") as info:
        sync(stripe_store, stripe_client)
    assert isinstance(info.value.__cause__, stripe.IdempotencyError)
    row = stripe_store.execute(
        "SELECT step, idempotency_key, outcome, http_status, error FROM stripe_requests WHERE outcome = 'error'"
    ).fetchone()
    assert row is not None and row[:4] == ("customer", "gpumeter:customer:acme", "error", 400)
    assert "idempotency_error" in row[4]


def test_changed_document_after_sync_fails_loudly(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    doc = invoice_json("GM-2026-000001", "acme", MONTH, LINES)
    write_document(stripe_store, root, doc)
    sync(stripe_store, stripe_client)
    # The frozen document is replaced wholesale (bytes, their SHA-256 and the total alike).
    tampered = invoice_json("GM-2026-000001", "acme", MONTH, [*LINES[:2], (A100, None, "8.5", "1.90")])
    data = json.dumps(tampered).encode()
    stripe_store.execute(
        "UPDATE billing_documents SET json_bytes = ?, json_sha256 = ?, total = ? WHERE number = 'GM-2026-000001'",
        [data, sha256(data), tampered["total"]],
    )
    with pytest.raises(StripeTotalMismatch, match="GM-2026-000001"):
        sync(stripe_store, stripe_client)


def test_foreign_item_on_the_draft_stops_finalization(
    stripe_store: duckdb.DuckDBPyConnection,
    stripe_double: StripeDouble,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_document(stripe_store, root, invoice_json("GM-2026-000001", "acme", MONTH, LINES))
    dying = make_client(stripe_double)
    crash_after(monkeypatch, dying.v1.invoice_items, "create", 2)
    with pytest.raises(Crash):
        sync_month(stripe_store, dying, MONTH, audit=None)
    client = make_client(stripe_double)
    (draft,) = stripe_double.objects("invoices")
    client.v1.invoice_items.create(params={"customer": draft["customer"], "invoice": draft["id"], "amount": 100})
    with pytest.raises(StripeSyncError, match="holds an item gpumeter did not send"):
        sync(stripe_store, client)
    assert stripe_double.objects("invoices")[0]["status"] == "draft"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(total="1.00"), "net \\+ vat is not total"),
        (lambda d: d["lines"][0].update(amount="1.001"), "at most two decimals"),
        (lambda d: d.update(currency="USD"), "only EUR"),
        (lambda d: d.update(vat_treatment="reverse_charge"), "cannot carry VAT"),
    ],
)
def test_inconsistent_documents_are_refused(
    stripe_store: duckdb.DuckDBPyConnection,
    stripe_client: stripe.StripeClient,
    stripe_double: StripeDouble,
    root: Path,
    mutate: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    doc = invoice_json("GM-2026-000001", "acme", MONTH, LINES)
    mutate(doc)
    write_document(stripe_store, root, doc)
    with pytest.raises(StripeSyncError, match=message):
        sync(stripe_store, stripe_client)
    assert stripe_double.log == []


def test_audit_log_gets_one_entry_per_document_without_personal_data(
    stripe_store: duckdb.DuckDBPyConnection, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, root: Path
) -> None:
    for i, tenant in enumerate(TENANTS, start=1):
        write_document(stripe_store, root, invoice_json(f"GM-2026-00000{i}", tenant, MONTH, LINES))
    # The first run's log writes are lost (as by a crash right after Stripe answered).
    sync_month(stripe_store, stripe_client, MONTH, audit=None)
    log = AuditLog(stripe_store)
    assert log.subjects("stripe_sync", MONTH) == {}
    sent = posts(stripe_double)

    sync(stripe_store, stripe_client)
    sync(stripe_store, stripe_client)

    assert posts(stripe_double) == sent
    assert sorted(log.subjects("stripe_sync", MONTH)) == ["GM-2026-000001", "GM-2026-000002", "GM-2026-000003"]
    assert log.size() == 3
    found = log.latest("stripe_sync", "GM-2026-000001", MONTH)
    assert found is not None
    entry = json.loads(found[1])
    assert entry["tenant"] == "acme" and entry["sent"]["total"] == invoice_json("x", "acme", MONTH, LINES)["total"]
    assert [i["idempotency_key"] for i in entry["sent"]["items"]][-1] == "gpumeter:GM-2026-000001:item:vat"
    text = found[1].decode()
    for name, _country, vat_id, email, address in TENANTS.values():
        for secret in (name, email, address, *([vat_id] if vat_id else [])):
            assert secret not in text
