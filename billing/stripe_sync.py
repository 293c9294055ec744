"""Push finalized gpumeter invoices and credit notes to Stripe, idempotently.

gpumeter's Factur-X document is the legal invoice; Stripe only collects the money.
So Stripe must show the *same* amounts, never recompute them:

- one Stripe invoice item per gpumeter line, carrying the line's already rounded amount
  in integer cents (``amount``); GPU-hours and unit price go in the description and
  metadata only, so Stripe never multiplies or rounds;
- **VAT decision**: VAT is pushed as one more invoice item ("VAT 20.00 % on EUR …") with
  gpumeter's VAT amount in cents, not as a Stripe tax rate. A Stripe tax rate is applied
  per line and rounded per line, whereas gpumeter (like EN 16931) rounds VAT once on the
  net — the two can differ by cents. A plain item makes Stripe's ``total`` equal the legal
  invoice's total by construction. Reverse-charge and outside-scope invoices have no VAT
  item; their legal mention goes in the Stripe invoice footer;
- the Stripe invoice carries gpumeter's number (``number``), is created as a draft with
  ``pending_invoice_items_behavior="exclude"`` (no stray pending item can slip in) and
  ``auto_advance=False``; after finalization Stripe's ``total`` is compared with
  gpumeter's and a difference raises :class:`StripeTotalMismatch`;
- a credit note becomes a Stripe credit note on the Stripe invoice of the number it
  references, with one custom line per gpumeter line (+ VAT); on an open invoice it
  reduces what is due, on a paid one it is credited to the customer's balance;
- at most 250 items per Stripe invoice (Stripe's limit): a document with more lines is an
  error raised before *anything* is sent for the month — one legal invoice must map to one
  Stripe invoice, and with one line per GPU model × profile 250 is never legitimately hit.

Data boundary: only amounts, invoice numbers, tenant ids and GPU model / hours / price
leave the EU store. Customers are created with metadata ``gpumeter_tenant`` alone (no
name, e-mail or address); job ids and hosts are never read.

Crash safety. Every POST carries an idempotency key derived from the document
(``gpumeter:<number>:invoice``, ``…:item:<line>``, ``…:item:vat``, ``…:finalize``,
``…:credit_note``; ``gpumeter:customer:<tenant>``). Each answered request is written to
``stripe_requests`` and its step to ``stripe_steps`` in one DuckDB transaction. A re-run
skips recorded steps. A crash between Stripe's answer and that commit leaves a step
unrecorded; the re-run then first looks the object up in Stripe (invoices by
``metadata.gpumeter_invoice``, items by ``metadata.gpumeter_line``, credit notes by
``metadata.gpumeter_credit_note``, customers by search on ``metadata.gpumeter_tenant``)
and adopts it; only what is not found is created, with the same key — so even after
Stripe's 24 h key expiry nothing is duplicated, and within it a replay returns the same
object. An invoice whose Stripe copy is already finalized is left alone (its status and
total are checked); a draft whose items are complete is checked and finalized.

Audit: after each document, what was sent (items, amounts, keys, Stripe ids, no personal
data) becomes one ``stripe_sync`` entry of the audit log (``audit.record``), written once
per document — a run that finds the entry missing (lost to a crash) writes it.

Errors::

    BillingError (billing.errors)
    └── StripeSyncError            a document cannot be pushed (file, number)
        ├── StripeRequestError     Stripe refused or did not answer (wraps stripe.StripeError)
        └── StripeTotalMismatch    Stripe's total differs from the legal document's
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import polars as pl
import stripe
from stripe.params import (
    CreditNoteCreateParams,
    CreditNoteCreateParamsLine,
    CustomerCreateParams,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
    InvoiceItemCreateParamsPeriod,
)

from audit.log import AuditLog
from audit.record import record_stripe_sync
from billing.errors import BillingError
from gpumeter import store

MAX_ITEMS_PER_INVOICE = 250
DESCRIPTION_MAX = 500
METADATA_VALUE_MAX = 500
KEY_PREFIX = "gpumeter"
_CENT = Decimal("0.01")
_PAID_LIKE = ("open", "paid", "void", "uncollectible")

T = TypeVar("T")


class StripeSyncError(BillingError):
    """A gpumeter document cannot be pushed to Stripe; names the document."""

    def __init__(
        self, message: str, *, number: str | None = None, file: str | Path | None = None, value: object = None
    ) -> None:
        super().__init__(message if number is None else f"{number}: {message}", file=file, value=value)
        self.number = number


class StripeRequestError(StripeSyncError):
    """Stripe refused a request, or could not be reached (after the SDK's retries)."""


class StripeTotalMismatch(StripeSyncError):
    """Stripe's total for a document is not the legal document's total."""


# --- the documents, read from <output>/<YYYY-MM>/<number>.json -------------------------------


@dataclass(frozen=True)
class DocLine:
    gpu_model: str
    mig_profile: str | None
    gpu_hours: str  # as printed (decimal string)
    unit_price: str  # EUR per GPU-hour, as printed
    amount_cents: int


@dataclass(frozen=True)
class Document:
    """The fields of the invoice JSON (docs/formats.md) that the sync uses — and nothing else."""

    file: Path
    number: str
    kind: Literal["invoice", "credit_note"]
    tenant: str
    period: str
    lines: tuple[DocLine, ...]
    net_cents: int
    vat_treatment: str
    vat_rate: str
    vat_cents: int
    total_cents: int
    references: str | None
    vat_mention: str | None


def _cents(value: object, what: str, file: Path) -> int:
    """A two-decimal amount ("12.34") as integer cents; never through float."""
    try:
        amount = Decimal(value) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount != amount.quantize(_CENT):
        raise StripeSyncError(f"{what} must be a decimal amount with at most two decimals", file=file, value=value)
    if amount < 0:
        raise StripeSyncError(
            f"{what} must not be negative (credit notes carry positive amounts)", file=file, value=value
        )
    return int(amount * 100)


def _text(doc: Mapping[str, Any], key: str, file: Path) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise StripeSyncError(f"field {key!r} must be a non-empty string", file=file, value=value)
    return value


def parse_document(raw: Mapping[str, Any], file: Path) -> Document:
    """Check one finalized document and keep what Stripe needs; amounts must add up."""
    number = _text(raw, "number", file)
    kind = raw.get("kind")
    if kind not in ("invoice", "credit_note"):
        raise StripeSyncError("kind must be invoice or credit_note", number=number, file=file, value=kind)
    if raw.get("currency") != "EUR":
        raise StripeSyncError("only EUR documents can be pushed", number=number, file=file, value=raw.get("currency"))
    treatment = _text(raw, "vat_treatment", file)
    if treatment not in ("domestic", "reverse_charge", "outside_scope"):
        raise StripeSyncError("unknown vat_treatment", number=number, file=file, value=treatment)
    lines_raw = raw.get("lines")
    if not isinstance(lines_raw, list):
        raise StripeSyncError("lines must be a list", number=number, file=file)
    lines = []
    for i, ln in enumerate(lines_raw, start=1):
        if not isinstance(ln, dict):
            raise StripeSyncError(f"line {i} is not an object", number=number, file=file)
        profile = ln.get("mig_profile")
        lines.append(
            DocLine(
                gpu_model=_text(ln, "gpu_model", file),
                mig_profile=profile if isinstance(profile, str) and profile else None,
                gpu_hours=str(ln.get("gpu_hours", "")),
                unit_price=str(ln.get("unit_price", "")),
                amount_cents=_cents(ln.get("amount"), f"line {i} amount", file),
            )
        )
    net = _cents(raw.get("net"), "net", file)
    vat = _cents(raw.get("vat"), "vat", file)
    total = _cents(raw.get("total"), "total", file)
    if sum(ln.amount_cents for ln in lines) != net:
        raise StripeSyncError("the lines do not add up to net", number=number, file=file, value=raw.get("net"))
    if net + vat != total:
        raise StripeSyncError("net + vat is not total", number=number, file=file, value=raw.get("total"))
    if treatment != "domestic" and vat != 0:
        raise StripeSyncError(
            f"a {treatment} document cannot carry VAT", number=number, file=file, value=raw.get("vat")
        )
    references = raw.get("references")
    if kind == "credit_note" and not (isinstance(references, str) and references):
        raise StripeSyncError("a credit note must reference the invoice it corrects", number=number, file=file)
    mention = raw.get("vat_exemption")
    return Document(
        file=file,
        number=number,
        kind=kind,
        tenant=_text(raw, "tenant", file),
        period=_text(raw, "period", file),
        lines=tuple(lines),
        net_cents=net,
        vat_treatment=treatment,
        vat_rate=str(raw.get("vat_rate", "")),
        vat_cents=vat,
        total_cents=total,
        references=references if isinstance(references, str) and references else None,
        vat_mention=mention if isinstance(mention, str) and mention else None,
    )


def load_month(invoices_dir: Path, month: str) -> list[Document]:
    """The finalized documents of ``<invoices_dir>/<month>/*.json`` (drafts skipped)."""
    folder = Path(invoices_dir) / month
    if not folder.is_dir():
        raise StripeSyncError(f"no invoices for {month}: {folder} does not exist", file=folder)
    docs = []
    for file in sorted(folder.glob("*.json")):
        if file.name.startswith("draft-"):
            continue
        try:
            raw = json.loads(file.read_text(encoding="utf-8"), parse_float=Decimal)
        except (OSError, ValueError) as exc:
            raise StripeSyncError(f"cannot read invoice JSON: {exc}", file=file) from exc
        if not isinstance(raw, dict) or raw.get("status") != "finalized":
            continue
        doc = parse_document(raw, file)
        if doc.period != month:
            raise StripeSyncError(f"document of period {doc.period} filed under {month}", number=doc.number, file=file)
        if file.stem != doc.number:
            raise StripeSyncError("file name and number differ", number=doc.number, file=file)
        docs.append(doc)
    return docs


# --- the plan: what each document becomes in Stripe (pure) --------------------------------------


@dataclass(frozen=True)
class PlannedItem:
    step: str  # item:<n> | item:vat
    key: str  # Idempotency-Key
    amount_cents: int
    description: str
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Plan:
    doc: Document
    items: tuple[PlannedItem, ...]
    metadata: Mapping[str, str]
    description: str
    footer: str | None

    def key(self, step: str) -> str:
        return idempotency_key(self.doc.number, step)


def idempotency_key(number: str, step: str) -> str:
    """``gpumeter:<number>:<step>`` — the same on every run, so Stripe replays instead of duplicating."""
    return f"{KEY_PREFIX}:{number}:{step}"


def customer_key(tenant: str) -> str:
    return f"{KEY_PREFIX}:customer:{tenant}"


def _eur(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _clip(text: str, limit: int = DESCRIPTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_document(doc: Document) -> Plan:
    """Items, metadata and texts for one document; raises before anything is sent."""
    items = []
    for n, ln in enumerate(doc.lines, start=1):
        what = ln.gpu_model + (f" (MIG {ln.mig_profile})" if ln.mig_profile else "")
        meta = {
            "gpumeter_invoice": doc.number,
            "gpumeter_line": str(n),
            "gpu_model": ln.gpu_model,
            "gpu_hours": ln.gpu_hours,
            "unit_price_eur": ln.unit_price,
            "amount_eur": _eur(ln.amount_cents),
        }
        if ln.mig_profile:
            meta["mig_profile"] = ln.mig_profile
        desc = f"{what}: {ln.gpu_hours} GPU-hours × EUR {ln.unit_price}/GPU-hour, {doc.period} (line {n})"
        items.append(
            PlannedItem(f"item:{n}", idempotency_key(doc.number, f"item:{n}"), ln.amount_cents, _clip(desc), meta)
        )
    if doc.vat_cents:
        desc = f"VAT {doc.vat_rate} % on EUR {_eur(doc.net_cents)}"
        meta = {"gpumeter_invoice": doc.number, "gpumeter_line": "vat", "vat_rate_percent": doc.vat_rate}
        items.append(PlannedItem("item:vat", idempotency_key(doc.number, "item:vat"), doc.vat_cents, desc, meta))
    if len(items) > MAX_ITEMS_PER_INVOICE:
        raise StripeSyncError(
            f"{len(items)} Stripe items ({len(doc.lines)} lines"
            f"{' + VAT' if doc.vat_cents else ''}) exceed Stripe's {MAX_ITEMS_PER_INVOICE} per invoice; "
            "nothing was sent",
            number=doc.number,
            file=doc.file,
        )
    for item in items:
        for k, v in item.metadata.items():
            if len(v) > METADATA_VALUE_MAX:
                raise StripeSyncError(
                    f"metadata {k} longer than {METADATA_VALUE_MAX} characters", number=doc.number, value=v
                )
    metadata = {
        "gpumeter_tenant": doc.tenant,
        "gpumeter_period": doc.period,
        "gpumeter_kind": doc.kind,
        "gpumeter_vat_treatment": doc.vat_treatment,
        "gpumeter_total_eur": _eur(doc.total_cents),
    }
    if doc.kind == "invoice":
        metadata["gpumeter_invoice"] = doc.number
        if doc.references:
            metadata["gpumeter_references"] = doc.references
        description = f"GPU usage {doc.period}. The legal invoice is gpumeter {doc.number} (Factur-X PDF)."
    else:
        metadata["gpumeter_credit_note"] = doc.number
        metadata["gpumeter_invoice"] = doc.references or ""
        description = f"gpumeter credit note {doc.number} correcting invoice {doc.references} ({doc.period})."
    footer = {
        "reverse_charge": doc.vat_mention or "Autoliquidation — Reverse charge — Art. 196 Directive 2006/112/EC",
        "outside_scope": doc.vat_mention
        or "VAT not applicable: outside the scope of EU VAT (Art. 44 Directive 2006/112/EC)",
    }.get(doc.vat_treatment)
    return Plan(doc, tuple(items), metadata, _clip(description), _clip(footer) if footer else None)


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentResult:
    number: str
    kind: str
    tenant: str
    stripe_customer_id: str
    stripe_id: str
    action: Literal["created", "resumed", "unchanged"]
    total_cents: int  # the legal document's total
    stripe_total_cents: int  # Stripe's, after finalization (equal, or an error was raised)
    stripe_status: str


@dataclass(frozen=True)
class SyncReport:
    month: str
    documents: tuple[DocumentResult, ...]
    requests: int  # requests sent to Stripe by this run (GET and POST)
    posts: int  # of which POSTs (each with an idempotency key)

    def count(self, action: str) -> int:
        return sum(1 for d in self.documents if d.action == action)


@dataclass(frozen=True)
class AuditRecord:
    """What was sent to Stripe for one document and what Stripe answered (no personal data)."""

    invoice: str  # the gpumeter number (invoice or credit note)
    tenant: str
    period: str
    sent: Mapping[str, Any]
    result: Mapping[str, Any]


AuditHook = Callable[[duckdb.DuckDBPyConnection, AuditRecord], None]


def audit_record(plan: Plan, result: DocumentResult) -> AuditRecord:
    doc = plan.doc
    sent: dict[str, Any] = {
        "kind": doc.kind,
        "stripe_customer": result.stripe_customer_id,
        "currency": "EUR",
        "items": [{"line": it.step, "idempotency_key": it.key, "amount": _eur(it.amount_cents)} for it in plan.items],
        "total": _eur(doc.total_cents),
    }
    if doc.references:
        sent["references"] = doc.references
    return AuditRecord(
        doc.number,
        doc.tenant,
        doc.period,
        sent,
        {
            "stripe_id": result.stripe_id,
            "status": result.stripe_status,
            "total": _eur(result.stripe_total_cents),
        },
    )


def audit_stripe_sync(con: duckdb.DuckDBPyConnection, record: AuditRecord) -> None:
    """Record a document's push as one ``stripe_sync`` audit-log entry — once.

    Called after every document, also ones found unchanged: an entry lost to a crash
    between Stripe's answer and the log write is written by the next run.
    """
    if AuditLog(con).latest("stripe_sync", record.invoice, record.period) is not None:
        return
    record_stripe_sync(
        con, invoice=record.invoice, tenant=record.tenant, period=record.period, sent=record.sent, result=record.result
    )


# --- the I/O edge -------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _metadata(obj: Any) -> dict[str, str]:
    meta = getattr(obj, "metadata", None)
    return dict(meta.to_dict()) if meta is not None else {}


@dataclass
class _Session:
    con: duckdb.DuckDBPyConnection
    client: stripe.StripeClient
    days_until_due: int
    clock: Callable[[], datetime]
    requests: int = 0
    posts: int = 0
    customers: dict[str, str] = field(default_factory=dict)

    # ---- one request: send, log, and (optionally) record the step, atomically ----
    def call(
        self,
        doc: Document | None,
        tenant: str,
        step: str,
        method: str,
        path: str,
        send: Callable[[], T],
        *,
        key: str | None = None,
        amount_cents: int | None = None,
        record_step: bool = False,
    ) -> T:
        number = doc.number if doc else None
        sent_at = self.clock()
        self.requests += 1
        self.posts += method == "POST"
        log = {
            "sent_at": sent_at,
            "number": number,
            "tenant": tenant,
            "step": step,
            "method": method,
            "path": path,
            "idempotency_key": key,
            "amount_cents": amount_cents,
        }
        try:
            obj = send()
        except stripe.StripeError as exc:
            status = exc.http_status
            err = exc.error
            detail = " ".join(x for x in (err.type if err else None, exc.code, exc.user_message or str(exc)) if x)
            store.run(
                self.con,
                "stripe_request_log",
                {**log, "stripe_object_id": None, "outcome": "error", "http_status": status, "error": detail},
            )
            what = "refused" if status else "could not be reached for"
            hint = (
                " (idempotency key reused with other parameters: was the document changed after a sync?)"
                if isinstance(exc, stripe.IdempotencyError)
                else ""
            )
            raise StripeRequestError(
                f"Stripe {what} step {step} ({method} {path}){hint}: {exc.user_message or exc}",
                number=number,
                file=doc.file if doc else None,
            ) from exc
        object_id = getattr(obj, "id", None)
        response = getattr(obj, "last_response", None)
        with store.transaction(self.con):
            store.run(
                self.con,
                "stripe_request_log",
                {
                    **log,
                    "stripe_object_id": object_id,
                    "outcome": "ok",
                    "http_status": response.code if response is not None else None,
                    "error": None,
                },
            )
            if record_step:
                if number is None or not isinstance(object_id, str):
                    raise StripeSyncError(f"Stripe answered step {step} ({method} {path}) without an object id")
                self.record_step(number, step, object_id, key, amount_cents)
        return obj

    def record_step(self, number: str, step: str, object_id: str, key: str | None, amount_cents: int | None) -> None:
        store.run(
            self.con,
            "stripe_step_record",
            {
                "number": number,
                "step": step,
                "idempotency_key": key,
                "stripe_object_id": object_id,
                "amount_cents": amount_cents,
                "at": self.clock(),
            },
        )

    def steps(self, number: str) -> dict[str, tuple[str, int | None]]:
        rows = store.run(self.con, "stripe_steps_done", {"number": number}).fetchall()
        return {str(step): (str(oid), amount) for step, oid, amount in rows}

    def pages(self, doc: Document, step: str, path: str, fetch: Callable[[str | None], Any]) -> Iterator[Any]:
        """Every object of a Stripe list, one logged GET per page."""
        after: str | None = None
        while True:
            page = self.call(doc, doc.tenant, step, "GET", path, partial(fetch, after))
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    def save_document(self, doc: Document, customer: str, stripe_id: str, status: str) -> None:
        store.run(
            self.con,
            "stripe_document_upsert",
            {
                "number": doc.number,
                "kind": doc.kind,
                "tenant": doc.tenant,
                "period": doc.period,
                "references_number": doc.references,
                "stripe_customer_id": customer,
                "stripe_id": stripe_id,
                "total_cents": doc.total_cents,
                "stripe_status": status,
                "at": self.clock(),
            },
        )

    # ---- customers ----
    def customer(self, doc: Document) -> str:
        tenant = doc.tenant
        if tenant in self.customers:
            return self.customers[tenant]
        row = store.run(self.con, "stripe_customer_lookup", {"tenant": tenant}).fetchone()
        configured, recorded = (row[0], row[1]) if row else (None, None)
        if configured:
            found, source = str(configured), "tenants.csv"
        elif recorded:
            found, source = str(recorded), ""
        else:
            query = f"metadata['gpumeter_tenant']:'{_quote(tenant)}'"
            hits = list(
                self.call(
                    doc,
                    tenant,
                    "find:customer",
                    "GET",
                    "/v1/customers/search",
                    lambda: self.client.v1.customers.search(params={"query": query, "limit": 10}),
                ).data
            )
            if len(hits) > 1:
                raise StripeSyncError(
                    f"{len(hits)} Stripe customers carry gpumeter_tenant={tenant}; set stripe_customer in tenants.csv",
                    number=doc.number,
                )
            if hits:
                found, source = str(hits[0].id), "found"
            else:
                params: CustomerCreateParams = {
                    "metadata": {"gpumeter_tenant": tenant},
                    "description": f"gpumeter tenant {tenant}",
                }
                key = customer_key(tenant)
                created = self.call(
                    doc,
                    tenant,
                    "customer",
                    "POST",
                    "/v1/customers",
                    lambda: self.client.v1.customers.create(params=params, options={"idempotency_key": key}),
                    key=key,
                )
                found, source = created.id, "created"
        if source:
            store.run(
                self.con,
                "stripe_customer_record",
                {"tenant": tenant, "customer_id": found, "source": source, "at": self.clock()},
            )
        self.customers[tenant] = found
        return found

    # ---- invoices ----
    def sync_invoice(self, plan: Plan) -> DocumentResult:
        doc = plan.doc
        steps = self.steps(doc.number)
        if "finalize" in steps:
            inv_id = steps["finalize"][0]
            inv = self._retrieve(doc, "check", inv_id)
            return self._finished(plan, inv, "unchanged")
        customer = self.customer(doc)
        resumed = bool(steps)
        if "invoice" in steps:
            inv = self._retrieve(doc, "check", steps["invoice"][0])
        else:
            found = self._find_invoice(doc, customer)
            if found is not None:
                inv, resumed = found, True
                self.record_step(doc.number, "invoice", found.id, None, None)
            else:
                inv = self._create_invoice(plan, customer)
        self.save_document(doc, customer, inv.id, str(inv.status))
        if inv.status != "draft":  # finalized in Stripe, but the answer never got recorded
            self.record_step(doc.number, "finalize", inv.id, None, None)
            return self._finished(plan, inv, "resumed")
        missing = [it for it in plan.items if it.step not in steps]
        if missing and resumed:
            missing = self._adopt_items(plan, inv.id, missing)
        for item in missing:
            params: InvoiceItemCreateParams = {
                "customer": customer,
                "invoice": inv.id,
                "amount": item.amount_cents,
                "currency": "eur",
                "description": item.description,
                "metadata": dict(item.metadata),
                "period": _period(doc.period),
            }
            self.call(
                doc,
                doc.tenant,
                item.step,
                "POST",
                "/v1/invoiceitems",
                partial(self.client.v1.invoice_items.create, params=params, options={"idempotency_key": item.key}),
                key=item.key,
                amount_cents=item.amount_cents,
                record_step=True,
            )
        draft = self._retrieve(doc, "check", inv.id)
        if draft.status == "draft" and draft.total != doc.total_cents:
            raise StripeTotalMismatch(
                f"Stripe draft {inv.id} totals {_eur(draft.total)} EUR, the legal invoice {_eur(doc.total_cents)} EUR; "
                "not finalized",
                number=doc.number,
            )
        key = plan.key("finalize")
        final = draft
        if draft.status == "draft":
            final = self.call(
                doc,
                doc.tenant,
                "finalize",
                "POST",
                f"/v1/invoices/{inv.id}/finalize",
                lambda: self.client.v1.invoices.finalize_invoice(
                    inv.id, params={"auto_advance": False}, options={"idempotency_key": key}
                ),
                key=key,
                amount_cents=doc.total_cents,
                record_step=True,
            )
        else:
            self.record_step(doc.number, "finalize", inv.id, None, None)
        return self._finished(plan, final, "resumed" if resumed else "created")

    def _create_invoice(self, plan: Plan, customer: str) -> stripe.Invoice:
        doc = plan.doc
        params: InvoiceCreateParams = {
            "customer": customer,
            "currency": "eur",
            "auto_advance": False,
            "collection_method": "send_invoice",
            "days_until_due": self.days_until_due,
            "number": doc.number,
            "pending_invoice_items_behavior": "exclude",
            "metadata": dict(plan.metadata),
            "description": plan.description,
        }
        if plan.footer:
            params["footer"] = plan.footer
        key = plan.key("invoice")
        return self.call(
            doc,
            doc.tenant,
            "invoice",
            "POST",
            "/v1/invoices",
            lambda: self.client.v1.invoices.create(params=params, options={"idempotency_key": key}),
            key=key,
            record_step=True,
        )

    def _find_invoice(self, doc: Document, customer: str) -> stripe.Invoice | None:
        hits = [
            inv
            for inv in self.pages(
                doc,
                "find:invoice",
                "/v1/invoices",
                lambda after: self.client.v1.invoices.list(
                    params={"customer": customer, "limit": 100, **({"starting_after": after} if after else {})}
                ),
            )
            if _metadata(inv).get("gpumeter_invoice") == doc.number and inv.status != "void"
        ]
        if len(hits) > 1:
            raise StripeSyncError(f"{len(hits)} Stripe invoices carry this number", number=doc.number)
        return hits[0] if hits else None

    def _adopt_items(self, plan: Plan, invoice_id: str, missing: Sequence[PlannedItem]) -> list[PlannedItem]:
        """Record items that exist in Stripe but not here; return those still to create."""
        doc = plan.doc
        planned = {it.step: it for it in plan.items}
        seen: dict[str, Any] = {}
        for item in self.pages(
            doc,
            "find:items",
            "/v1/invoiceitems",
            lambda after: self.client.v1.invoice_items.list(
                params={"invoice": invoice_id, "limit": 100, **({"starting_after": after} if after else {})}
            ),
        ):
            meta = _metadata(item)
            step = f"item:{meta.get('gpumeter_line')}"
            if meta.get("gpumeter_invoice") != doc.number or step not in planned:
                raise StripeSyncError(
                    f"Stripe draft {invoice_id} holds an item gpumeter did not send: {item.id}", number=doc.number
                )
            if step in seen:
                raise StripeSyncError(
                    f"Stripe draft {invoice_id} holds {step} twice ({seen[step].id}, {item.id})", number=doc.number
                )
            if item.amount != planned[step].amount_cents:
                raise StripeTotalMismatch(
                    f"Stripe item {item.id} ({step}) is {_eur(item.amount)} EUR, "
                    f"gpumeter's line {_eur(planned[step].amount_cents)} EUR",
                    number=doc.number,
                )
            seen[step] = item
        left = []
        for it in missing:
            if it.step in seen:
                self.record_step(doc.number, it.step, seen[it.step].id, None, it.amount_cents)
            else:
                left.append(it)
        return left

    def _retrieve(self, doc: Document, step: str, invoice_id: str) -> stripe.Invoice:
        return self.call(
            doc,
            doc.tenant,
            step,
            "GET",
            f"/v1/invoices/{invoice_id}",
            lambda: self.client.v1.invoices.retrieve(invoice_id),
        )

    def _finished(
        self, plan: Plan, inv: stripe.Invoice, action: Literal["created", "resumed", "unchanged"]
    ) -> DocumentResult:
        doc = plan.doc
        customer = inv.customer if isinstance(inv.customer, str) else getattr(inv.customer, "id", "")
        self.save_document(doc, str(customer), inv.id, str(inv.status))
        if inv.total != doc.total_cents:
            raise StripeTotalMismatch(
                f"Stripe invoice {inv.id} ({inv.status}) totals {_eur(inv.total)} EUR, "
                f"the legal invoice {_eur(doc.total_cents)} EUR",
                number=doc.number,
            )
        return DocumentResult(
            doc.number, doc.kind, doc.tenant, str(customer), inv.id, action, doc.total_cents, inv.total, str(inv.status)
        )

    # ---- credit notes ----
    def sync_credit_note(self, plan: Plan) -> DocumentResult:
        doc = plan.doc
        steps = self.steps(doc.number)
        ref = store.run(self.con, "stripe_document_get", {"number": doc.references}).fetchone()
        if ref is None or ref[1] != "invoice":
            raise StripeSyncError(
                f"invoice {doc.references} is not in Stripe yet; sync its month first", number=doc.number
            )
        invoice_id, customer = str(ref[6]), str(ref[5])
        action: Literal["created", "resumed", "unchanged"]
        if "credit_note" in steps:
            cn_id = steps["credit_note"][0]
            note = self.call(
                doc,
                doc.tenant,
                "check",
                "GET",
                f"/v1/credit_notes/{cn_id}",
                lambda: self.client.v1.credit_notes.retrieve(cn_id),
            )
            action = "unchanged"
        else:
            inv = self._retrieve(doc, "check", invoice_id)
            hits = [
                cn
                for cn in self.pages(
                    doc,
                    "find:credit_note",
                    "/v1/credit_notes",
                    lambda after: self.client.v1.credit_notes.list(
                        params={"invoice": invoice_id, "limit": 100, **({"starting_after": after} if after else {})}
                    ),
                )
                if _metadata(cn).get("gpumeter_credit_note") == doc.number
            ]
            if hits:
                note, action = hits[0], "resumed"
                self.record_step(doc.number, "credit_note", note.id, None, doc.total_cents)
            else:
                note, action = self._create_credit_note(plan, inv), "created"
        self.save_document(doc, customer, note.id, str(note.status))
        # The credited invoice's status may have moved (an open invoice credited to zero is paid).
        inv_after = self._retrieve(doc, "check", invoice_id)
        store.run(
            self.con,
            "stripe_document_status",
            {"number": doc.references, "stripe_status": str(inv_after.status), "at": self.clock()},
        )
        if note.total != doc.total_cents:
            raise StripeTotalMismatch(
                f"Stripe credit note {note.id} totals {_eur(note.total)} EUR, "
                f"the legal credit note {_eur(doc.total_cents)} EUR",
                number=doc.number,
            )
        return DocumentResult(
            doc.number, doc.kind, doc.tenant, customer, note.id, action, doc.total_cents, note.total, str(note.status)
        )

    def _create_credit_note(self, plan: Plan, inv: stripe.Invoice) -> stripe.CreditNote:
        doc = plan.doc
        if inv.status not in ("open", "paid"):
            raise StripeSyncError(
                f"Stripe invoice {inv.id} is {inv.status}; credit notes need open or paid", number=doc.number
            )
        lines: list[CreditNoteCreateParamsLine] = [
            {
                "type": "custom_line_item",
                "description": item.description,
                "quantity": 1,
                "unit_amount": item.amount_cents,
                "metadata": dict(item.metadata),
            }
            for item in plan.items
            if item.amount_cents > 0
        ]
        params: CreditNoteCreateParams = {
            "invoice": inv.id,
            "lines": lines,
            "memo": plan.description,
            "metadata": dict(plan.metadata),
        }
        remaining = inv.amount_remaining if inv.status == "open" else 0
        post_payment = doc.total_cents - min(doc.total_cents, remaining)
        if post_payment:  # the part already paid goes to the customer's balance, for the next invoice
            params["credit_amount"] = post_payment
        key = plan.key("credit_note")
        return self.call(
            doc,
            doc.tenant,
            "credit_note",
            "POST",
            "/v1/credit_notes",
            lambda: self.client.v1.credit_notes.create(params=params, options={"idempotency_key": key}),
            key=key,
            amount_cents=doc.total_cents,
            record_step=True,
        )


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _period(month: str) -> InvoiceItemCreateParamsPeriod:
    """The month as Stripe's ``period``: [first second, first second of the next month), UTC."""
    year, mon = int(month[:4]), int(month[5:7])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return {"start": int(start.timestamp()), "end": int(end.timestamp())}


def sync_month(
    con: duckdb.DuckDBPyConnection,
    client: stripe.StripeClient,
    month: str,
    *,
    invoices_dir: Path,
    days_until_due: int = 30,
    audit: AuditHook | None = audit_stripe_sync,
    clock: Callable[[], datetime] = _utcnow,
) -> SyncReport:
    """Push the month's finalized documents (``<invoices_dir>/<month>/*.json``) to Stripe.

    Invoices go first (in number order), then credit notes. Every document is read and
    planned before the first request, so a bad document or one over 250 items stops the
    run with nothing sent. Re-running is safe at any point (see the module docstring).
    After each document, ``audit`` records what was sent (default: one ``stripe_sync``
    entry in the audit log, written once per document).
    """
    store.require_schema(con)
    docs = load_month(Path(invoices_dir), month)
    plans = [plan_document(d) for d in docs]
    invoices = sorted((p for p in plans if p.doc.kind == "invoice"), key=lambda p: p.doc.number)
    notes = sorted((p for p in plans if p.doc.kind == "credit_note"), key=lambda p: p.doc.number)
    here = {p.doc.number for p in invoices}
    for p in notes:
        if (
            p.doc.references not in here
            and store.run(con, "stripe_document_get", {"number": p.doc.references}).fetchone() is None
        ):
            raise StripeSyncError(
                f"references invoice {p.doc.references}, which is neither in {month} nor already in Stripe; "
                "nothing was sent",
                number=p.doc.number,
                file=p.doc.file,
            )
    session = _Session(con, client, days_until_due, clock)
    results = []
    for plan in [*invoices, *notes]:
        result = session.sync_invoice(plan) if plan.doc.kind == "invoice" else session.sync_credit_note(plan)
        if audit is not None:
            audit(con, audit_record(plan, result))
        results.append(result)
    return SyncReport(month, tuple(results), session.requests, session.posts)


def payment_status(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    """The month's documents in Stripe: ``number, stripe_invoice_id, status, amount, updated_at``.

    ``amount`` is EUR incl. VAT as a Decimal (negative for credit notes); ``status`` is
    paid | payment_failed | open | draft | void | uncollectible | issued (credit notes);
    ``updated_at`` is UTC.
    """
    return store.frame(con, "stripe_payment_status", {"month": month})
