"""Builders for the Stripe tests: clients, tenants and invoice JSON files in the documented shape.

- :func:`make_client`: the real ``stripe`` SDK pointed at a :class:`StripeDouble`;
- :func:`add_tenants`: three tenants with names, e-mails and addresses, so tests can
  prove none of it reaches Stripe;
- :func:`invoice_json` / :func:`write_document`: finalized documents, frozen in the store
  as ``gpumeter invoice --finalize`` does (the JSON bytes and their SHA-256 in
  ``billing_documents``) and written to the invoices folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import stripe

from gpumeter import store
from gpumeter.months import Month
from metering.inventory import Tenant
from testing import stores

from .server import StripeDouble

API_KEY = "sk_test_gpumeter_double_0001"
CENT = Decimal("0.01")

#: tenant -> (legal_name, country, vat_id, email, address): the PII that must stay home.
TENANTS = {
    "acme": ("ACME Informatique SAS", "FR", "FR40303265045", "billing@acme.example", "1 rue de la Paix, Paris"),
    "bauer": ("Bauer Rechenzentrum GmbH", "DE", "DE136695976", "ap@bauer.example", "Hauptstr. 5, Berlin"),
    "globex": ("Globex Corporation", "US", "", "ap@globex.example", "1 Main St, Springfield"),
}
TREATMENT = {"acme": "domestic", "bauer": "reverse_charge", "globex": "outside_scope"}
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def make_client(double: StripeDouble, *, api_key: str = API_KEY, retries: int = 2) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": double.url}, max_network_retries=retries)


def add_tenants(con: duckdb.DuckDBPyConnection, stripe_customers: dict[str, str] | None = None) -> None:
    customers = stripe_customers or {}
    stores.add_tenants(
        con,
        [
            Tenant(tenant, name, country, vat_id, email, address, customers.get(tenant))
            for tenant, (name, country, vat_id, email, address) in TENANTS.items()
        ],
    )


def invoice_json(
    number: str,
    tenant: str,
    month: str,
    lines: Sequence[tuple[str, str | None, str, str]],
    *,
    kind: str = "invoice",
    references: str | None = None,
    treatment: str | None = None,
) -> dict[str, Any]:
    """A finalized document as docs/formats.md's "Invoice JSON".

    ``lines``: (gpu_model, mig_profile, gpu_hours, unit_price); each amount is
    hours × price rounded half-up once; VAT 20 % on the net when domestic.
    """
    treatment = treatment or TREATMENT[tenant]
    out_lines: list[dict[str, Any]] = []
    for model, profile, hours, price in lines:
        amount = (Decimal(hours) * Decimal(price)).quantize(CENT, ROUND_HALF_UP)
        out_lines.append(
            {"gpu_model": model, "mig_profile": profile, "gpu_hours": hours, "unit_price": price, "amount": f"{amount}"}
        )
    net = sum((Decimal(x["amount"]) for x in out_lines), Decimal("0.00"))
    rate = Decimal("20.00") if treatment == "domestic" else Decimal("0.00")
    vat = (net * rate / 100).quantize(CENT, ROUND_HALF_UP)
    name, country, vat_id, email, address = TENANTS[tenant]
    return {
        "number": number,
        "status": "finalized",
        "kind": kind,
        "tenant": tenant,
        "period": month,
        "currency": "EUR",
        "lines": out_lines,
        "net": f"{net}",
        "vat_treatment": treatment,
        "vat_rate": f"{rate}",
        "vat": f"{vat}",
        "total": f"{net + vat}",
        "references": references,
        "customer": {
            "tenant": tenant,
            "legal_name": name,
            "country": country,
            "vat_id": vat_id,
            "email": email,
            "address": address,
        },
    }


def write_document(con: duckdb.DuckDBPyConnection, root: Path, doc: dict[str, Any]) -> Path:
    """Issue ``doc``: freeze it in the store if finalized, then write ``<root>/<period>/<number>.json``."""
    data = json.dumps(doc, indent=2).encode("utf-8")
    if doc["status"] == "finalized":
        freeze(con, doc, data)
    folder: Path = root / str(doc["period"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['number']}.json"
    path.write_bytes(data)
    return path


def freeze(con: duckdb.DuckDBPyConnection, doc: dict[str, Any], data: bytes) -> None:
    """One ``billing_documents`` row for ``doc`` through billing's own insert query."""
    month = Month.parse(doc["period"])
    issued = month.next().first_day
    series = str(doc["kind"])
    row = con.execute("SELECT count(*) FROM billing_documents WHERE series = ?", [series]).fetchone()
    pdf = b"%PDF-1.7 test double"
    store.run(
        con,
        "billing_insert_document",
        {
            "number": doc["number"],
            "supplier_vat_id": "FR40303265045",
            "series": series,
            "year": issued.year,
            "seq": (row[0] if row else 0) + 1,
            "kind": doc["kind"],
            "type_code": "381" if doc["kind"] == "credit_note" else "380",
            "tenant": doc["tenant"],
            "period": str(month),
            "issue_date": issued,
            "due_date": issued,
            "references_number": doc["references"],
            "references_date": issued if doc["references"] else None,
            "currency": doc["currency"],
            "net": doc["net"],
            "vat_treatment": doc["vat_treatment"],
            "vat_rate": doc["vat_rate"],
            "vat": doc["vat"],
            "total": doc["total"],
            "rates_sha256": sha256(b""),
            "json_bytes": data,
            "json_sha256": sha256(data),
            "pdf_bytes": pdf,
            "pdf_sha256": sha256(pdf),
            "xml_sha256": sha256(b""),
            "finalized_at": datetime.combine(issued, datetime.min.time(), UTC),
        },
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cents(amount: str) -> int:
    return int(Decimal(amount) * 100)
