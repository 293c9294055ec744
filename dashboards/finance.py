"""The Finance page's data: revenue, unbilled usage, invoices, payments, credit notes.

Everything is read from what billing stored or computes; nothing here prices anything:

* **revenue** is the signed sum of issued lines (``billing_document_lines``; credit notes
  negative), EUR excl. VAT, exact Decimal. A line carries a site only when its site was
  priced apart; the rest of a line is split over the sites where that tenant's GPU time of
  that model (for a minimum-spend true-up, which names no model: of any model) ran in that
  month, in proportion to the GPU-seconds, by the largest-remainder
  method on whole cents — so the split always adds up to the invoiced cents exactly. The
  split is an analysis of where revenue came from, not an amount anyone is billed.
  Promotional credits (document-level allowances) are revenue given up: a negative row each,
  named by the credit in place of a model and a site, so every breakdown sums to the nets;
* **unbilled** usage is what ``gpumeter invoice --finalize`` would issue now for the month
  (billing's own :func:`billing.run.month_plan`: the month's billable usage and contracts,
  minus what was already issued): a draft's lines per tenant, and a negative row per
  promotional credit it would take off, as revenue has them;
* **invoices** with their Stripe payment status (:func:`billing.stripe.payments.payment_status`)
  and the PDF bytes frozen in the store (:func:`billing.numbering.issued_files`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import floor

import duckdb
import polars as pl

from billing.errors import BillingError
from billing.invoice import Kind, Period
from billing.numbering import issued_files
from billing.run import month_plan
from billing.stripe.payments import payment_status
from gpumeter import store
from gpumeter.config import Config
from gpumeter.errors import GpumeterError

EUR = pl.Decimal(18, 2)
REVENUE_BY = ("month", "tenant", "gpu_model", "site")
UNALLOCATED = "(no usage to split by)"

_REVENUE_SCHEMA = pl.Schema(
    {
        "month": pl.String(),
        "number": pl.String(),
        "kind": pl.String(),
        "tenant": pl.String(),
        "gpu_model": pl.String(),
        "site": pl.String(),
        "amount": EUR,
    }
)


def revenue_lines(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every issued line, signed (credit notes negative), and every promotional credit drawn
    (negative; given back on a credit note: positive); EUR excl. VAT."""
    return store.frame(con, "dash_revenue_lines")


def apportion(amount: Decimal, weights: Sequence[tuple[str, int]]) -> list[tuple[str, Decimal]]:
    """Split ``amount`` (whole cents) over ``weights`` by largest remainder; the parts add up exactly."""
    live = [(k, w) for k, w in weights if w > 0]
    if not live:
        return [(UNALLOCATED, amount)]
    cents = int((amount * 100).to_integral_value())
    if Decimal(cents) / 100 != amount:
        raise ValueError(f"{amount} is not a whole number of cents")
    sign, cents = (-1 if cents < 0 else 1), abs(cents)
    total = sum(w for _, w in live)
    shares = [Fraction(cents * w, total) for _, w in live]
    parts = [floor(s) for s in shares]
    order = sorted(range(len(live)), key=lambda i: (-(shares[i] - parts[i]), live[i][0]))
    for i in order[: cents - sum(parts)]:
        parts[i] += 1
    return [(k, Decimal(sign * p) / 100) for (k, _), p in zip(live, parts, strict=True)]


def revenue_by_site_lines(lines: pl.DataFrame, usage: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Revenue lines with a site each: priced-apart sites as issued, the rest split by GPU-seconds.

    ``usage`` maps a month to its :func:`dashboards.utilisation.rollup` frame.
    """
    weights: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for month, frame in usage.items():
        per = (
            frame.filter(pl.col("tenant").is_not_null())
            .group_by("tenant", "gpu_model", "site")
            .agg(pl.col("gpu_ns").sum())
            .sort("tenant", "gpu_model", "site")
        )
        for tenant, model, site, ns in per.iter_rows():
            weights.setdefault((month, tenant, model), []).append((site or "(unknown host)", int(ns)))
        # A minimum-spend true-up names no model (""): split by the tenant's GPU time of any model.
        anymodel = per.group_by("tenant", "site").agg(pl.col("gpu_ns").sum()).sort("tenant", "site")
        for tenant, site, ns in anymodel.iter_rows():
            weights.setdefault((month, tenant, ""), []).append((site or "(unknown host)", int(ns)))
    rows: list[tuple[str, str, str, str, str, str, Decimal]] = []
    for month, number, kind, tenant, model, site, amount in lines.select(
        "month", "number", "kind", "tenant", "gpu_model", "site", "amount"
    ).iter_rows():
        if site:
            rows.append((month, number, kind, tenant, model, site, amount))
            continue
        for part_site, part in apportion(amount, weights.get((month, tenant, model), [])):
            rows.append((month, number, kind, tenant, model, part_site, part))
    return pl.DataFrame(rows, schema=_REVENUE_SCHEMA, orient="row")


def revenue_by(lines: pl.DataFrame, dimension: str) -> pl.DataFrame:
    """Net revenue (EUR excl. VAT) per value of one dimension, with invoice and credit-note parts."""
    if dimension not in REVENUE_BY:
        raise ValueError(f"revenue is broken down by {REVENUE_BY}, not {dimension!r}")
    zero = pl.lit(Decimal("0.00"), dtype=EUR)
    return (
        lines.group_by(dimension)
        .agg(
            pl.col("amount").sum().cast(EUR).alias("net_eur"),
            pl.when(pl.col("kind") == "invoice")
            .then(pl.col("amount"))
            .otherwise(zero)
            .sum()
            .cast(EUR)
            .alias("invoiced_eur"),
            pl.when(pl.col("kind") == "credit_note")
            .then(pl.col("amount"))
            .otherwise(zero)
            .sum()
            .cast(EUR)
            .alias("credited_eur"),
            pl.col("number").n_unique().alias("documents"),
        )
        .sort(dimension)
    )


def documents(con: duckdb.DuckDBPyConnection, month: str | None = None) -> pl.DataFrame:
    """Issued invoices and credit notes of ``month`` (all months when None); EUR."""
    return store.frame(con, "dash_documents", {"month": month})


def invoices_with_payment(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """The month's issued documents with what Stripe last said about their payment."""
    docs = documents(con, month)
    paid = payment_status(con, month).select(
        "number",
        pl.col("status").alias("payment_status"),
        "stripe_invoice_id",
        pl.col("updated_at").alias("payment_updated_at"),
    )
    return (
        docs.join(paid, on="number", how="left")
        .with_columns(pl.col("payment_status").fill_null("not sent to Stripe"))
        .select(
            "number",
            "kind",
            "tenant",
            "issue_date",
            "due_date",
            "references_number",
            "net",
            "vat",
            "total",
            "vat_treatment",
            "payment_status",
            "stripe_invoice_id",
            "payment_updated_at",
        )
    )


def credit_notes(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return documents(con).filter(pl.col("kind") == Kind.CREDIT_NOTE.value)


@dataclass(frozen=True)
class InvoiceFile:
    number: str
    file_name: str
    data: bytes


def invoice_pdf(con: duckdb.DuckDBPyConnection, number: str) -> InvoiceFile:
    """The issued PDF (Factur-X) exactly as frozen in the store, checked against its SHA-256."""
    _, _, pdf, sha = issued_files(con, number)
    if hashlib.sha256(pdf).hexdigest() != sha:
        raise BillingError("the stored PDF no longer matches its SHA-256", value=number)
    return InvoiceFile(number, f"{number}.pdf", pdf)


@dataclass(frozen=True)
class Unbilled:
    """What invoicing the month now would issue, per line; ``error`` when it cannot be priced."""

    month: str
    lines: pl.DataFrame  # one row per line that would be issued (_UNBILLED_SCHEMA)
    error: str | None

    @property
    def net(self) -> Decimal:
        total = self.lines.get_column("amount").sum() if self.lines.height else None
        return Decimal(total) if total is not None else Decimal("0.00")

    def per_tenant(self) -> pl.DataFrame:
        return (
            self.lines.group_by("tenant")
            .agg(pl.col("amount").sum().cast(EUR).alias("net_eur"), pl.col("gpu_hours").sum().alias("gpu_hours"))
            .sort("tenant")
        )


_UNBILLED_SCHEMA = pl.Schema(
    {
        "tenant": pl.String(),
        "kind": pl.String(),
        "references": pl.String(),
        "gpu_model": pl.String(),
        "mig_profile": pl.String(),
        "site": pl.String(),
        "description": pl.String(),
        "gpu_hours": pl.Decimal(38, 6),
        "unit_price": pl.Decimal(38, 12),
        "amount": EUR,
    }
)


def unbilled(con: duckdb.DuckDBPyConnection, config: Config, month: str) -> Unbilled:
    """The month's usage not yet invoiced, priced by billing exactly as ``invoice`` would."""
    try:
        plan, _ = month_plan(con, config, Period.parse(month))
    except GpumeterError as exc:
        return Unbilled(month, pl.DataFrame(schema=_UNBILLED_SCHEMA), exc.explain())
    rows: list[tuple[object, ...]] = []  # in _UNBILLED_SCHEMA's order
    for inv in plan.pending:
        sign = -1 if inv.kind is Kind.CREDIT_NOTE else 1
        for ln in inv.lines:
            rows.append(
                (
                    inv.tenant,
                    inv.kind.value,
                    inv.references.number if inv.references else None,
                    ln.gpu_model,
                    ln.mig_profile,
                    ln.site,
                    ln.description,
                    sign * ln.gpu_hours_display,
                    ln.unit_price,
                    sign * ln.amount,
                )
            )
        for credit in inv.allowances:  # before VAT, as revenue counts it (dash_revenue_lines)
            named = f"(promotional credit {credit.credit})"
            refs = inv.references.number if inv.references else None
            rows.append(
                (
                    inv.tenant,
                    inv.kind.value,
                    refs,
                    named,
                    None,
                    named,
                    credit.allowance_reason,
                    None,
                    None,
                    -sign * credit.amount,
                )
            )
    return Unbilled(month, pl.DataFrame(rows, schema=_UNBILLED_SCHEMA, orient="row"), None)
