"""SIGKILL during ``stripe sync`` between two calls to Stripe (the Stripe test double): the
re-run resumes from what the store recorded, and Stripe and the store end as after an
undisturbed sync: one customer per tenant, one invoice per document with the same items and
total, nothing created twice."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from billing.run import invoice_month
from gpumeter import store
from tests.billing.conftest import Site
from tests.faults.billing_sites import MONTH, billing_site
from tests.faults.conftest import GPUMETER
from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import API_KEY

SYNC = ("stripe", "sync", "--month", MONTH)
ISSUED_AT = datetime(2026, 11, 2, 9, tzinfo=UTC)


def issued_site(root: Path) -> Site:
    """The billing site with October issued (in-process, the same way the CLI does it)."""
    site = billing_site(root)
    con = store.connect(site.config.store.database)
    try:
        assert len(invoice_month(con, site.config, MONTH, True, now=ISSUED_AT)) == 3
    finally:
        con.close()
    return site


def sync(site: Site, double: StripeDouble) -> subprocess.Popen[str]:
    env = {**os.environ, "STRIPE_API_KEY": API_KEY, "GPUMETER_STRIPE_API_BASE": double.url}
    return subprocess.Popen(
        [GPUMETER, "--config", str(site.root / "gpumeter.toml"), *SYNC],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stripe_side(double: StripeDouble) -> tuple[Any, ...]:
    """What Stripe holds, without its ids: customers' tenants; per invoice its number, tenant,
    status, total and items (line, amount); the number of credit notes."""
    tenants = {c["id"]: c["metadata"].get("gpumeter_tenant") for c in double.objects("customers")}
    items: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for item in double.objects("invoiceitems"):
        items[item["invoice"]].append((item["metadata"].get("gpumeter_line"), item["amount"]))
    invoices = sorted(
        (i["metadata"].get("gpumeter_invoice"), tenants[i["customer"]], i["status"], i["total"], sorted(items[i["id"]]))
        for i in double.objects("invoices")
    )
    return sorted(tenants.values()), invoices, len(double.objects("credit_notes"))


def store_side(site: Site, double: StripeDouble) -> tuple[Any, ...]:
    """What the store recorded, without Stripe's ids, after checking those ids against Stripe."""
    con = store.connect(site.config.store.database, read_only=True)
    try:
        docs = con.execute(
            "SELECT number, kind, tenant, stripe_id, total_cents, stripe_status FROM stripe_documents ORDER BY 1"
        ).fetchall()
        steps = con.execute(
            "SELECT number, step, stripe_object_id, amount_cents FROM stripe_steps ORDER BY 1, 2"
        ).fetchall()
        customers = con.execute("SELECT tenant, stripe_customer_id, source FROM stripe_customers ORDER BY 1").fetchall()
    finally:
        con.close()
    invoices = {i["id"]: i for i in double.objects("invoices")}
    objects = set(invoices) | {o["id"] for o in double.objects("invoiceitems")}
    assert {d[3] for d in docs} == set(invoices), "Stripe holds invoices the store does not know, or the reverse"
    assert all(invoices[d[3]]["total"] == d[4] for d in docs)
    assert all(s[2] in objects for s in steps), "a recorded step points at nothing in Stripe"
    assert {c[1] for c in customers} == {c["id"] for c in double.objects("customers")}
    return (
        [(n, k, t, cents, status) for n, k, t, _, cents, status in docs],
        [(n, step, cents) for n, step, _, cents in steps],
        [(t, source) for t, _, source in customers],
    )


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, tuple[Any, ...], tuple[Any, ...]]]:
    """(requests an undisturbed sync makes, Stripe's side, the store's side)."""
    site = issued_site(tmp_path_factory.mktemp("undisturbed") / "site")
    with StripeDouble() as double:
        proc = sync(site, double)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "3 created" in err
        yield len(double.log), stripe_side(double), store_side(site, double)


@pytest.mark.parametrize("where", ["early", "last"])
def test_sigkill_between_calls_to_stripe(
    tmp_path: Path, undisturbed: tuple[int, tuple[Any, ...], tuple[Any, ...]], where: str
) -> None:
    requests, stripe_want, store_want = undisturbed
    kill_at = {"early": 3, "last": requests}[where]  # the third request, or the very last one
    site = issued_site(tmp_path / "site")
    with StripeDouble() as double:
        proc: subprocess.Popen[str] | None = None

        def kill(n: int, method: str, path: str) -> None:
            if n == kill_at and proc is not None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

        double.fail_after(kill_at - 1, status=503)  # the request the kill interrupts is never run
        double.on_request = kill
        proc = sync(site, double)
        proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL
        assert len([r for r in double.log if r.fault is None]) == kill_at - 1
        double.heal()
        double.on_request = None

        again = sync(site, double)
        _, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        assert stripe_side(double) == stripe_want
        assert store_side(site, double) == store_want
