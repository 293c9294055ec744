"""``gpumeter invoice``: the I/O edge of billing (store, rates file, output folder, clock).

Order of work, so that bad input changes nothing:

1. read everything (:func:`month_plan`): rates.toml, contracts.toml, tenants, billable usage,
   what reservations drew from it (one DuckDB query), what was already issued, and what the
   issued documents did with credits;
2. compute every pending document in memory (pure :func:`billing.plan.plan_month`): a full invoice
   for a tenant with nothing issued for the month, else a supplementary invoice and/or a
   credit note for what moved since; any pricing or VAT error stops here;
3. without ``--finalize``: rewrite ``<output>/<YYYY-MM>/draft-<tenant>.json`` and ``.pdf``
   (stale drafts of the month are removed first);
4. with ``--finalize``: only for a month that has ended and was fully collected, at an
   issue date no earlier than the last issued document's (:mod:`billing.closing`); in
   **one** transaction, claim each gapless number, build the Factur-X XML, validate it
   (XSD always; EN 16931 and, for French customers, French CTC schematrons when saxonche
   is installed), render and embed the PDF, store the frozen
   document (lines and totals as DECIMAL, JSON and PDF bytes, SHA-256s) and record the
   finalization in the audit log; commit; then write ``<number>.json`` / ``.pdf``.
   For a tenant with ``einvoice = peppol`` the same transaction also builds the UBL XML
   (:mod:`billing.ubl`), validates it (UBL XSD, CEN EN 16931 and Peppol BIS rules: a fatal
   finding stops the whole finalize), freezes it and logs its SHA-256: ``<number>.xml``.
   Issued files missing from the folder are restored from the store, byte for byte.

The e-invoice format is decided when a document is issued, from the tenant's ``einvoice``
then: an issued document keeps the format it was issued in and is never re-issued in
another; a tenant switched to (or from) Peppol gets the new format from its next
document on, corrections of earlier months included.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl

from audit.keys import pin_mention
from billing.closing import coverage_note, verify_issue_date, verify_month_closed
from billing.contracts import read_contracts, verify_references
from billing.credits import NO_HISTORY
from billing.drawdown import read_draws
from billing.errors import BillingError, RatesError
from billing.facturx_xml import build_xml
from billing.invoice import (
    Invoice,
    Kind,
    Period,
    aggregate_usage,
    to_json,
)
from billing.numbering import (
    DEFAULT_PREFIXES,
    check_frozen,
    check_prefix,
    claim,
    issued_files,
    issued_ubl,
    read_credit_history,
    read_issued,
    store_document,
    store_ubl,
)
from billing.parties import verify_supplier
from billing.pdf import facturx_pdf, render_pdf
from billing.plan import IssuedDocument, MonthPlan, plan_month
from billing.rates import RateCard, parse_rates
from billing.ubl import build_ubl, verify_peppol_supplier
from billing.validate import ValidationReport, saxon_available, verify_facturx, verify_ubl
from gpumeter import store
from gpumeter.config import Config
from gpumeter.errors import Problems, read_text
from gpumeter.files import atomic_write
from gpumeter.months import Month
from metering.einvoice import FACTURX, PEPPOL
from metering.inventory import Tenant

UsageSource = Callable[[duckdb.DuckDBPyConnection, str], pl.DataFrame]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class InvoiceResult:
    """One document of the month, as the CLI and the demo report it."""

    tenant: str
    kind: str  # invoice | credit_note
    status: str  # draft | finalized
    number: str | None
    references: str | None
    net: Decimal
    vat: Decimal
    total: Decimal
    vat_treatment: str
    due: Decimal  # total less prepaid credits (what is left to pay, or to refund on a credit note)
    json_path: Path
    pdf_path: Path
    created: bool  # written by this run (a draft, or a document issued now)
    validation: str  # e.g. "xsd+en16931+fr-ctc passed", "xsd passed; schematron skipped", "draft"
    ubl_path: Path | None = None  # <number>.xml, for a document issued to a Peppol tenant


# --- reading ---------------------------------------------------------------------------------


def read_rates(path: Path, problems: Problems | None = None) -> RateCard:
    """rates.toml read and parsed (see :func:`billing.rates.parse_rates` for ``problems``)."""
    return parse_rates(read_text(path, "rates file", RatesError), file=path, problems=problems)


def _prefixes(config: Config) -> dict[Kind, str]:
    """Number prefixes; ``[billing] invoice_prefix`` / ``credit_note_prefix`` may override."""
    raw = config.raw.get("billing", {}) if isinstance(config.raw.get("billing"), dict) else {}
    out = dict(DEFAULT_PREFIXES)
    for kind, key in ((Kind.INVOICE, "invoice_prefix"), (Kind.CREDIT_NOTE, "credit_note_prefix")):
        if key in raw:
            try:
                out[kind] = check_prefix(raw[key])
            except BillingError as exc:
                raise BillingError(f"[billing] {key}: {exc.message}", file=config.path, value=raw[key]) from exc
    if out[Kind.INVOICE] == out[Kind.CREDIT_NOTE]:
        raise BillingError("[billing] invoice and credit-note series need different prefixes", file=config.path)
    return out


def read_tenants(con: duckdb.DuckDBPyConnection) -> dict[str, Tenant]:
    """The tenants of the tenants.csv version in the store (the customers of this month)."""
    return {
        t: Tenant(t, name, country, vat or "", email, address, stripe_customer, einvoice or FACTURX, peppol_id)
        for t, name, country, vat, email, address, stripe_customer, einvoice, peppol_id in store.run(
            con, "billing_tenants"
        ).fetchall()
    }


def default_usage(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """Billable usage, summed per tenant x model x profile x site by the store itself."""
    from metering.report import billable_groups

    return billable_groups(con, month)


# --- writing ---------------------------------------------------------------------------------


def month_dir(config: Config, period: Period) -> Path:
    return config.billing.output / period.month


def draft_stem(inv: Invoice, *, second: bool) -> str:
    safe = urllib.parse.quote(inv.tenant, safe="-_.")
    return f"draft-{safe}" + ("-credit-note" if second else "")


def json_bytes(inv: Invoice) -> bytes:
    return (json.dumps(to_json(inv), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_finalization(
    con: duckdb.DuckDBPyConnection,
    invoice: Invoice,
    jbytes: bytes,
    pdf: bytes,
    moment: datetime,
    ubl: bytes | None = None,
) -> int:
    """Log one finalization in the audit log (an ``invoice_finalized`` entry vouching for the
    SHA-256 of the JSON, the PDF and the UBL XML if any), inside the finalization transaction:
    if the log cannot take it, nothing is issued. Returns the entry's index."""
    from audit.record import record_invoice_finalized

    assert invoice.number is not None
    return record_invoice_finalized(
        con,
        number=invoice.number,
        tenant=invoice.tenant,
        period=invoice.period.month,
        totals={"net": invoice.net, "vat": invoice.vat_amount, "total": invoice.total},
        currency="EUR",
        json_document=jbytes,
        pdf_document=pdf,
        kind=invoice.kind.value,
        at=moment,
        ubl_document=ubl,
    )


def _fr_ctc_applies(inv: Invoice) -> bool:
    """French CTC rules bind domestic French B2B e-invoices (others are e-reported)."""
    return inv.supplier.country == "FR" and inv.customer.country == "FR" and bool(inv.customer.siren)


def _validation_text(report: ValidationReport, ubl: ValidationReport | None = None) -> str:
    text = "+".join(report.checks) + " passed"
    if report.skipped:
        text += f"; {'+'.join(report.skipped)} skipped (saxonche not installed)"
    if ubl is not None:
        text += f"; Peppol UBL {'+'.join(ubl.checks)} passed"
    return text


def month_plan(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    period: Period,
    *,
    usage: UsageSource | None = None,
    progress: Progress | None = None,
    per_job_draws: bool = False,
    only: Collection[str] | None = None,
) -> tuple[MonthPlan, RateCard]:
    """Read every input of the month and plan its documents (nothing is written).

    The one way billing, the FOCUS export, the Finance dashboard and budgets price a month;
    ``per_job_draws`` also splits what reservations drew among jobs (FOCUS rows are per job);
    ``only`` plans just those tenants (their usage alone is priced, so another tenant's
    unpriceable usage does not stop them).
    """
    say = progress or (lambda _msg: None)
    store.require_schema(con)
    card = read_rates(config.billing.rates)
    contracts = read_contracts(config.billing.contracts)
    month = Month.parse(period.month)
    say(f"reading billable usage for {period.month}")
    groups = aggregate_usage((usage or default_usage)(con, period.month))
    if only is not None:
        groups = [g for g in groups if g.tenant in only]
    tenants = read_tenants(con)
    verify_references(
        contracts,
        tenants=tenants,
        models=card.models(),
        sites={site for (site,) in store.run(con, "billing_sites").fetchall()},
    )
    draws = read_draws(con, month, groups, card, contracts, per_job=per_job_draws)
    issued, positions = read_issued(con, period)
    if only is not None:
        issued = [d for d in issued if d.tenant in only]
        positions = {t: p for t, p in positions.items() if t in only}
    plan = plan_month(
        period=period,
        groups=groups,
        card=card,
        tenants=tenants,
        supplier=config.billing.supplier,
        payment_terms_days=config.billing.payment_terms_days,
        issued=issued,
        positions=positions,
        contracts=contracts,
        draws=draws,
        credits=read_credit_history(con) if contracts.credits else NO_HISTORY,
        only=only,
    )
    return plan, card


def invoice_month(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    month: str,
    finalize: bool,
    *,
    usage: UsageSource | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[InvoiceResult]:
    """Draft (or, with ``finalize``, issue) the month's documents; see the module docstring."""
    say = progress or (lambda _msg: None)
    period = Period.parse(month)
    supplier = config.billing.supplier
    prefixes = _prefixes(config)
    plan, card = month_plan(con, config, period, usage=usage, progress=say)
    issued = plan.issued
    for w in plan.warnings:
        say(f"warning: {w}")
    note = coverage_note(con, Month.parse(period.month), config.telemetry.scrape_interval_ms)
    if note:
        say(note)
    out_dir = month_dir(config, period)
    if not finalize:
        drafts = _write_drafts(plan, out_dir, say)
        earlier = [_issued_result(doc, out_dir) for doc in issued]
        return sorted(drafts + earlier, key=lambda r: (r.tenant, r.number or "~"))
    if now is not None and now.tzinfo is None:
        raise BillingError("the issue time must be timezone-aware (UTC)", value=str(now))
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    verify_month_closed(con, Month.parse(period.month), moment)
    verify_supplier(supplier, file=str(config.path))
    if any(inv.einvoice == PEPPOL for inv in plan.pending):
        verify_peppol_supplier(supplier, file=str(config.path))
    if plan.pending:
        verify_issue_date(con, moment.date())
    pin = pin_mention(config.audit.signing_key, config.audit.origin)
    if pin is None and plan.pending:
        say("warning: the audit log has no key yet (run `gpumeter init`); these documents cannot name it")
    created = _issue(con, plan, prefixes, card, moment, out_dir, say, pin=pin)
    for path, data in created.files:
        atomic_write(path, data)
    for stale in out_dir.glob("draft-*") if out_dir.exists() else []:
        stale.unlink()
    results = list(created.results)
    issued_now = {r.number for r in results}
    issued_after, _ = read_issued(con, period)
    for doc in issued_after:
        if doc.number in issued_now:
            continue
        results.append(_restore(con, doc, out_dir))
    results.sort(key=lambda r: (r.tenant, r.number or ""))
    say(f"{len(issued_now)} document(s) issued for {period.month}")
    return results


def _write_drafts(plan: MonthPlan, out_dir: Path, say: Progress) -> list[InvoiceResult]:
    writes: list[tuple[Path, bytes]] = []
    results: list[InvoiceResult] = []
    seen: set[str] = set()
    for inv in plan.pending:
        stem = draft_stem(inv, second=inv.tenant in seen)
        seen.add(inv.tenant)
        say(f"draft {stem}")
        jpath, ppath = out_dir / f"{stem}.json", out_dir / f"{stem}.pdf"
        writes += [(jpath, json_bytes(inv)), (ppath, render_pdf(inv))]
        results.append(_result(inv, jpath, ppath, created=True, validation="draft"))
    for stale in out_dir.glob("draft-*") if out_dir.exists() else []:
        stale.unlink()
    for path, data in writes:
        atomic_write(path, data)
    return results


def _result(inv: Invoice, jpath: Path, ppath: Path, *, created: bool, validation: str) -> InvoiceResult:
    return InvoiceResult(
        tenant=inv.tenant,
        kind=inv.kind.value,
        status=inv.status,
        number=inv.number,
        references=inv.references.number if inv.references else None,
        net=inv.net,
        vat=inv.vat_amount,
        total=inv.total,
        vat_treatment=inv.vat.treatment.value,
        due=inv.due,
        json_path=jpath,
        pdf_path=ppath,
        created=created,
        validation=validation,
    )


@dataclass
class _Issued:
    results: list[InvoiceResult] = field(default_factory=list)
    files: list[tuple[Path, bytes]] = field(default_factory=list)


def _issue(
    con: duckdb.DuckDBPyConnection,
    plan: MonthPlan,
    prefixes: Mapping[Kind, str],
    card: RateCard,
    moment: datetime,
    out_dir: Path,
    say: Progress,
    *,
    pin: str | None = None,
) -> _Issued:
    """Number, render, validate, store and log each pending document; ``pin`` is the
    audit log key's mention every issued document carries (:func:`audit.keys.pin_mention`)."""
    out = _Issued()
    if not plan.pending:
        return out
    issue_date = moment.date()
    # Invoices first, then credit notes; tenants in order: the numbering is reproducible.
    pending = sorted(plan.pending, key=lambda i: (i.kind is Kind.CREDIT_NOTE, i.tenant))
    with store.transaction(con):
        for inv in pending:
            number = claim(
                con, supplier_vat_id=inv.supplier.vat_id, kind=inv.kind, year=issue_date.year, prefix=prefixes[inv.kind]
            )
            final = inv.finalize(str(number), issue_date)
            if pin is not None:
                final = replace(final, notes=(*final.notes, pin))
            say(f"issuing {final.number} ({final.kind.value}, tenant {final.tenant})")
            xml = build_xml(final)
            report = verify_facturx(xml, fr_ctc=_fr_ctc_applies(final), number=final.number)
            ubl, ubl_report = None, None
            if final.einvoice == PEPPOL:
                ubl = build_ubl(final)
                ubl_report = verify_ubl(ubl, number=final.number)
            pdf = facturx_pdf(render_pdf(final), xml, final)
            jbytes = json_bytes(final)
            store_document(con, final, number.seq, card.sha256, jbytes, pdf, xml, moment)
            jpath, ppath = out_dir / f"{final.number}.json", out_dir / f"{final.number}.pdf"
            out.files += [(jpath, jbytes), (ppath, pdf)]
            upath = None
            if ubl is not None:
                store_ubl(con, str(final.number), ubl)
                upath = out_dir / f"{final.number}.xml"
                out.files.append((upath, ubl))
            record_finalization(con, final, jbytes, pdf, moment, ubl)
            result = _result(final, jpath, ppath, created=True, validation=_validation_text(report, ubl_report))
            out.results.append(replace(result, ubl_path=upath))
    return out


def _restore(con: duckdb.DuckDBPyConnection, doc: IssuedDocument, out_dir: Path) -> InvoiceResult:
    """An earlier document: rewrite its files from the store if missing or altered."""
    jbytes, jsha, pdf, psha = issued_files(con, doc.number)
    frozen = [(f"{doc.number}.json", jbytes, jsha), (f"{doc.number}.pdf", pdf, psha)]
    ubl = issued_ubl(con, doc.number)
    if ubl is not None:
        frozen.append((f"{doc.number}.xml", *ubl))
    for name, data, sha in frozen:
        check_frozen(doc.number, name, data, sha)
        path = out_dir / name
        if not path.exists() or _sha256(path.read_bytes()) != sha:
            atomic_write(path, data)
    result = _issued_result(doc, out_dir)
    return replace(result, ubl_path=out_dir / f"{doc.number}.xml") if ubl is not None else result


def _issued_result(doc: IssuedDocument, out_dir: Path) -> InvoiceResult:
    return InvoiceResult(
        tenant=doc.tenant,
        kind=doc.kind,
        status="finalized",
        number=doc.number,
        references=doc.references_number,
        net=doc.net,
        vat=doc.vat,
        total=doc.total,
        vat_treatment=doc.vat_treatment,
        due=doc.due,
        json_path=out_dir / f"{doc.number}.json",
        pdf_path=out_dir / f"{doc.number}.pdf",
        created=False,
        validation="issued earlier",
    )


def validation_summary(results: Iterable[InvoiceResult]) -> str:
    """One line for the CLI about what validation ran on the documents issued now."""
    issued = [r for r in results if r.created and r.status == "finalized"]
    if not issued:
        return "validation: no document issued in this run"
    peppol = sum(1 for r in issued if r.ubl_path is not None)
    also = f"; {peppol} Peppol UBL XML(s) passed UBL XSD + CEN EN 16931 + Peppol BIS 3.0 rules" if peppol else ""
    if not saxon_available():
        return "validation: XSD passed; EN 16931 schematron skipped (saxonche not installed)" + also
    return (
        f"validation: {len(issued)} document(s) passed XSD + EN 16931 schematron (+ French CTC for French customers)"
        + also
    )
