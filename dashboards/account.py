"""My account: the reader of one tenant's own data (the ``tenant`` role and ``gpumeter export``).

Every function takes the tenant and binds it into the SQL it runs: the ``account_*.sql``
queries take ``$tenant`` as a required parameter, and what comes from metering and billing
(the sovereignty verdicts, the FOCUS rows) is read through their ``tenant`` filter. Another
tenant's rows are never read, rather than read and hidden by a page. As a second line,
every frame is checked on the way out (:func:`_only`): a row naming another tenant raises
:class:`~dashboards.errors.AccessDenied` instead of being shown or written.

================  ==================================================================
``months``        months with the tenant's usage, documents or budget alerts
``usage``         usage per job-month (month x job x model x MIG profile x site)
``usage_by``      that usage summed per project, job or GPU model (pure)
``budget``        its monthly budget; ``alerts`` the thresholds that fired
``documents``     its issued invoices and credit notes; ``document_files`` their bytes
``sovereignty``   each job's verdict with its evidence, as the Compliance page has it
``focus``         its FOCUS rows (billing's own, priced like its invoices)
``contracts``     reserved capacity and credits: a placeholder until contracts land
================  ==================================================================

Money is EUR Decimal excl. VAT unless a column says otherwise; times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb
import polars as pl

from audit.policy import Policy
from billing.budgets import Budget
from billing.contracts import read_contracts
from billing.credits import Book, CreditEvent, CreditHistory
from billing.focus import usage_focus
from billing.numbering import check_frozen, embedded_xml
from dashboards.compliance import BoundaryMonth, judge_month
from dashboards.errors import AccessDenied, UnknownTenant
from gpumeter import store
from gpumeter.config import Config
from gpumeter.months import Month
from metering.inventory import Tenant

USAGE_BY = ("project", "job_id", "gpu_model")


def tenant_info(con: duckdb.DuckDBPyConnection, tenant: str) -> Tenant:
    """The tenant as tenants.csv has it now (not its Stripe id); :class:`UnknownTenant` when it is not there."""
    row = store.run(con, "account_tenant", {"tenant": tenant}).fetchone()
    if row is None:
        raise UnknownTenant("no such tenant in tenants.csv", value=tenant)
    name, legal_name, country, vat_id, email, address = row
    return Tenant(str(name), str(legal_name), str(country), str(vat_id or ""), email, address)


def _only(frame: pl.DataFrame, tenant: str, column: str = "tenant") -> pl.DataFrame:
    """``frame`` if every row belongs to ``tenant``; a row of anyone else is refused, never shown."""
    if frame.height and frame.filter(pl.col(column).ne_missing(tenant)).height:
        raise AccessDenied(f"a query for tenant {tenant!r} returned another tenant's rows; nothing is shown")
    return frame


def months(con: duckdb.DuckDBPyConnection, tenant: str) -> list[str]:
    """Months (YYYY-MM) with the tenant's usage, documents or alerts, newest first."""
    return [str(m) for (m,) in store.run(con, "account_months", {"tenant": tenant}).fetchall()]


def usage(con: duckdb.DuckDBPyConnection, tenant: str, month: str | None = None) -> pl.DataFrame:
    """The tenant's usage per job-month (``sql/queries/account_usage.sql``); every month when None."""
    span = Month.parse(month) if month is not None else None
    params = {"tenant": tenant, "start": span.start if span else None, "end_": span.end if span else None}
    return _only(store.frame(con, "account_usage", params), tenant)


def usage_by(frame: pl.DataFrame, dimension: str) -> pl.DataFrame:
    """GPU-hours held and busy, energy and jobs per project, job or GPU model (pure)."""
    if dimension not in USAGE_BY:
        raise ValueError(f"usage is broken down by {USAGE_BY}, not {dimension!r}")
    return (
        frame.group_by(dimension)
        .agg(
            (pl.col("gpu_seconds").cast(pl.Float64).sum() / 3600).alias("held_gpu_hours"),
            (pl.col("busy_gpu_seconds").cast(pl.Float64).sum() / 3600).alias("busy_gpu_hours"),
            pl.col("energy_kwh").sum().alias("energy_kwh"),
            pl.col("job_id").n_unique().alias("jobs"),
        )
        .sort(dimension)
    )


def budget(con: duckdb.DuckDBPyConnection, tenant: str) -> Budget | None:
    """The tenant's monthly budget (EUR excl. VAT), or None."""
    row = store.run(con, "account_budget", {"tenant": tenant}).fetchone()
    if row is None:
        return None
    if row[0] != tenant:
        raise AccessDenied(f"a query for tenant {tenant!r} returned another tenant's budget")
    return Budget(str(row[0]), Decimal(row[1]), tuple(int(t) for t in row[2]))


def alerts(con: duckdb.DuckDBPyConnection, tenant: str, month: str | None = None) -> pl.DataFrame:
    """The budget thresholds that fired for the tenant (in ``month``, or every month)."""
    return _only(store.frame(con, "account_alerts", {"tenant": tenant, "month": month}), tenant)


def documents(con: duckdb.DuckDBPyConnection, tenant: str, month: str | None = None) -> pl.DataFrame:
    """The tenant's issued invoices and credit notes (of ``month``, or all), newest period first."""
    return _only(store.frame(con, "account_documents", {"tenant": tenant, "month": month}), tenant)


@dataclass(frozen=True)
class DocumentFile:
    """One file of an issued document, as frozen in the store and checked against its SHA-256."""

    number: str
    kind: str  # invoice | credit_note
    period: str
    file_name: str
    media_type: str
    what: str
    data: bytes


def document_files(con: duckdb.DuckDBPyConnection, tenant: str, number: str) -> list[DocumentFile]:
    """The PDF (Factur-X), its embedded XML, the invoice JSON and, for a Peppol tenant, the
    UBL 2.1 document of one of the tenant's documents.

    A number the tenant was not issued is refused exactly like a number that does not exist.
    """
    row = store.run(con, "account_document_files", {"tenant": tenant, "number": number}).fetchone()
    if row is None:
        raise AccessDenied(f"no issued document {number} for tenant {tenant!r}")
    number, kind, period, pdf, pdf_sha, jbytes, json_sha, xml_sha, ubl, ubl_sha = row
    pdf = check_frozen(number, "the PDF", pdf, pdf_sha)
    title = "credit note" if kind == "credit_note" else "invoice"
    files = [
        DocumentFile(number, kind, period, f"{number}.pdf", "application/pdf", f"{title}, PDF/A-3 (Factur-X)", pdf),
        DocumentFile(
            number,
            kind,
            period,
            f"{number}.factur-x.xml",
            "application/xml",
            f"{title}, Factur-X XML (EN 16931, CII) embedded in the PDF",
            embedded_xml(number, pdf, xml_sha),
        ),
        DocumentFile(
            number,
            kind,
            period,
            f"{number}.json",
            "application/json",
            f"{title}, gpumeter's JSON of the same document",
            check_frozen(number, "the JSON", jbytes, json_sha),
        ),
    ]
    if ubl is not None:
        files.append(
            DocumentFile(
                number,
                kind,
                period,
                f"{number}.ubl.xml",
                "application/xml",
                f"{title}, Peppol BIS Billing 3.0 (UBL 2.1)",
                check_frozen(number, "the UBL document", ubl, ubl_sha),
            )
        )
    return files


def sovereignty(con: duckdb.DuckDBPyConnection, tenant: str, month: str, boundary: Policy) -> BoundaryMonth:
    """The tenant's jobs of ``month`` under ``boundary``, each finding with its evidence."""
    judged = judge_month(con, month, boundary, tenant=tenant)
    _only(judged.jobs, tenant)
    _only(judged.violations, tenant)
    return judged


def focus(con: duckdb.DuckDBPyConnection, config: Config, tenant: str, month: str) -> pl.DataFrame:
    """The tenant's FOCUS 1.3 rows of ``month`` (billing's, with each job's verdict)."""
    return _only(usage_focus(con, config, month, tenant=tenant), tenant, "BillingAccountId")


def priced(frame: pl.DataFrame) -> Decimal:
    """What FOCUS rows cost (EUR excl. VAT): the sum of ``BilledCost``, the invoice net of their usage."""
    total = frame.get_column("BilledCost").sum() if frame.height else None
    return Decimal(total) if total is not None else Decimal("0.00")


@dataclass(frozen=True)
class Contracts:
    """Reserved capacity used vs included, and credits left, for one tenant and month."""

    tenant: str
    month: str
    reservations: pl.DataFrame | None  # None: no reservation of the tenant's in contracts.toml
    credits: pl.DataFrame | None  # None: no credit of the tenant's in contracts.toml
    note: str


NO_CONTRACTS = "no contracts"


def contracts(con: duckdb.DuckDBPyConnection, config: Config, tenant: str, month: str) -> Contracts:
    """The tenant's reservations as invoiced for ``month`` (GPU-hours included and used), and
    each of its credits' balance after every document issued so far.

    Balances come from billing's own rule (:class:`billing.credits.Book` over the issued
    documents' credit rows), read with ``$tenant`` bound; contracts.toml says what each credit
    was granted. Before the month is invoiced its reservations show no rows.
    """
    terms = read_contracts(config.billing.contracts)
    reserved = terms.reservations_in(Month.parse(month), tenant)
    credits = terms.credits_of(tenant)
    if not reserved and not credits:
        return Contracts(tenant, month, None, None, NO_CONTRACTS)
    reservations = None
    if reserved:
        period = str(Month.parse(month))
        reservations = _only(store.frame(con, "account_reservations", {"tenant": tenant, "period": period}), tenant)
    table = None
    if credits:
        events = tuple(
            CreditEvent(number, who, kind, Month.parse(period), credit, role, amount)
            for number, who, kind, period, credit, role, amount in store.run(
                con, "account_credit_history", {"tenant": tenant}
            ).fetchall()
        )
        if any(e.tenant != tenant for e in events):
            raise AccessDenied(f"a query for tenant {tenant!r} returned another tenant's rows; nothing is shown")
        (latest,) = store.run(con, "account_invoiced_month", {"tenant": tenant}).fetchone() or (None,)
        invoiced = {tenant: Month.parse(latest)} if latest else {}
        book = Book(credits, CreditHistory(events, invoiced), tenant)
        table = pl.DataFrame(
            {
                "credit": [c.id for c in book.credits],
                "kind": [c.kind.value for c in book.credits],
                "granted_eur": [c.eur for c in book.credits],
                "left_eur": [book.balance[c.id] for c in book.credits],
                "from": [c.start for c in book.credits],
                "expires": [c.expires for c in book.credits],
            },
            schema={
                "credit": pl.String,
                "kind": pl.String,
                "granted_eur": pl.Decimal(18, 2),
                "left_eur": pl.Decimal(18, 2),
                "from": pl.Date,
                "expires": pl.Date,
            },
        )
    return Contracts(tenant, month, reservations, table, "")
