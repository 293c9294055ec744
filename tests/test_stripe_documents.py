"""The sync pushes what billing issued, as the store froze it — not what the invoices folder holds.

Documents are issued by the real ``billing.run.invoice_month`` on a real DuckDB store (the
JSON and PDF bytes and their SHA-256 frozen in ``billing_documents``, an
``invoice_finalized`` audit entry each), then pushed to the Stripe test double.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import stripe

from billing.errors import StoreStateError
from billing.run import invoice_month
from billing.stripe.sync import sync_month
from tests.billing.conftest import A100, H100, Site, at, make_site
from tests.stripe_double import StripeDouble

pytest_plugins = ["tests.stripe_double.fixtures"]

MONTH = "2026-10"


@pytest.fixture
def issued(tmp_path: Path) -> Iterator[Site]:
    """October 2026 issued for three tenants: GM-2026-000001 (acme), -000002 (berlin), -000003 (nyc)."""
    site = make_site(tmp_path / "site")
    try:
        for job, tenant in (("j1", "acme"), ("j2", "berlin"), ("j3", "nyc")):
            site.add_job(job, tenant)
        site.add_usage("j1", H100, 36000)
        site.add_usage("j2", A100, "7617266.1")  # 2115.90725 GPU-hours at EUR 1.90: EUR 4,020.22
        site.add_usage("j3", H100, 7200, profile="3g.40gb")
        invoice_month(site.con, site.config, MONTH, True, now=at(2))
        yield site
    finally:
        site.con.close()


def stored(site: Site, number: str) -> tuple[bytes, Decimal]:
    row = site.con.execute("SELECT json_bytes, total FROM billing_documents WHERE number = ?", [number]).fetchone()
    assert row is not None
    return bytes(row[0]), row[1]


def test_an_issued_invoice_whose_file_is_missing_is_still_sent(
    issued: Site, stripe_client: stripe.StripeClient, stripe_double: StripeDouble
) -> None:
    """A crash between the store's commit and the file write left no GM-2026-000002.json."""
    (issued.out / MONTH / "GM-2026-000002.json").unlink()
    report = sync_month(issued.con, stripe_client, MONTH, audit=None)
    _, total = stored(issued, "GM-2026-000002")
    assert [d.number for d in report.documents] == ["GM-2026-000001", "GM-2026-000002", "GM-2026-000003"]
    invoices = {i["number"]: i for i in stripe_double.objects("invoices")}
    assert set(invoices) == {"GM-2026-000001", "GM-2026-000002", "GM-2026-000003"}
    assert invoices["GM-2026-000002"]["status"] == "open"
    assert invoices["GM-2026-000002"]["total"] == int(total * 100) == 402022  # what billing froze for berlin


def tamper(site: Site, how: str) -> None:
    """Alter GM-2026-000002 in the store as ``how`` says; its file on disk stays intact."""
    data, _ = stored(site, "GM-2026-000002")
    doc = json.loads(data)
    doc["lines"][0]["amount"] = doc["net"] = doc["total"] = "1.00"
    forged = json.dumps(doc).encode()
    con, number = site.con, ["GM-2026-000002"]
    if how == "bytes":
        con.execute("UPDATE billing_documents SET json_bytes = ? WHERE number = ?", [forged, *number])
    elif how == "bytes-and-hash":
        digest = hashlib.sha256(forged).hexdigest()
        con.execute(
            "UPDATE billing_documents SET json_bytes = ?, json_sha256 = ?, total = 1 WHERE number = ?",
            [forged, digest, *number],
        )
    elif how == "empty":
        con.execute("UPDATE billing_documents SET json_bytes = ''::BLOB WHERE number = ?", number)
    else:
        con.execute("DELETE FROM billing_document_lines WHERE number = ?", number)
        con.execute("DELETE FROM billing_documents WHERE number = ?", number)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("bytes", r"GM-2026-000002: the stored bytes of GM-2026-000002\.json do not match their SHA-256"),
        ("bytes-and-hash", r"GM-2026-000002: the audit log vouches for other JSON bytes"),
        ("empty", r"GM-2026-000002: the stored bytes of GM-2026-000002\.json are missing"),
        ("deleted", r"GM-2026-000002: finalized for 2026-10 in the audit log, but missing from the store"),
    ],
)
def test_a_stored_document_missing_or_not_matching_its_hash_is_refused(
    issued: Site, stripe_client: stripe.StripeClient, stripe_double: StripeDouble, how: str, message: str
) -> None:
    tamper(issued, how)
    with pytest.raises(StoreStateError, match=message) as info:
        sync_month(issued.con, stripe_client, MONTH, audit=None)
    assert info.value.value == "GM-2026-000002"
    assert issued.con.execute("SELECT count(*) FROM stripe_requests").fetchone() == (0,)
    assert stripe_double.log == []  # nothing sent, not even the documents before it
