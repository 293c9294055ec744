"""Opt-in: the same sync against Stripe's real test mode.

Runs only with ``STRIPE_API_KEY`` set to a *test-mode* key (``sk_test_…``/``rk_test_…``);
skipped, with the reason shown, otherwise. A live-mode key fails the test instead of
touching real money. Uses a fresh tenant id and invoice numbers per run; voids the
invoice and deletes the customer afterwards.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
import stripe

from billing.stripe.sync import sync_month
from gpumeter import store
from metering.inventory import Tenant
from testing.stores import add_tenants
from tests.stripe_double.documents import H100, cents, invoice_json, write_document

pytestmark = pytest.mark.stripe_live


@pytest.fixture
def live_client() -> stripe.StripeClient:
    key = os.environ.get("STRIPE_API_KEY", "")
    if not key:
        pytest.skip("STRIPE_API_KEY is not set: the Stripe test-mode run is opt-in (and needs internet)")
    if not key.startswith(("sk_test_", "rk_test_")):
        pytest.fail("STRIPE_API_KEY is not a test-mode key; refusing to run against live mode")
    return stripe.StripeClient(key, max_network_retries=2)


def test_sync_against_stripe_test_mode(live_client: stripe.StripeClient, tmp_path: Path) -> None:
    run = secrets.token_hex(4)
    tenant = f"live-{run}"
    con = store.memory()
    add_tenants(con, [Tenant(tenant, "Live Test", "FR", "FR40303265045")])
    doc = invoice_json(
        f"GM-LIVE-{run}", "acme", "2026-01", [(H100, None, "10", "2.80"), (H100, "3g.40gb", "1", "1.20")]
    )
    doc["tenant"] = tenant
    write_document(con, tmp_path, doc)
    report = sync_month(con, live_client, "2026-01", audit=None)
    (result,) = report.documents
    try:
        assert result.stripe_total_cents == cents(doc["total"])
        again = sync_month(con, live_client, "2026-01", audit=None)
        assert again.posts == 0 and again.documents[0].action == "unchanged"
    finally:
        inv = live_client.v1.invoices.retrieve(result.stripe_id)
        if inv.status == "open":
            live_client.v1.invoices.void_invoice(inv.id)
        customer = inv.customer if isinstance(inv.customer, str) else None
        if customer:
            live_client.v1.customers.delete(customer)
