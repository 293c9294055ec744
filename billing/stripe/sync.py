"""``sync_month``: push a month's issued invoices and credit notes to Stripe, idempotently.

Order: every document issued for the month is read from the store, checked against its
stored SHA-256 (:mod:`billing.stripe.documents`) and planned first, so a bad document (or
one over Stripe's 250 items) stops the run before the first request. Then invoices, in
number order, then credit notes.

An **invoice** becomes a Stripe draft carrying gpumeter's number, created with
``pending_invoice_items_behavior="exclude"`` (no stray pending item can slip in) and
``auto_advance=False``; one item per line (+ VAT, and one per credit) is added; the draft's
total is compared with what the legal document leaves to pay (its ``due``: the total less
prepaid credits) before it is finalized, and Stripe's total again after. A **credit note**
becomes a Stripe credit note on the Stripe invoice of the number it references: on an open
invoice it reduces what is due, on a paid one it is credited to the customer's balance; a
credit note that only gives credits back (due 0) sends nothing (action ``nothing_due``). A
difference in totals raises :class:`~billing.errors.StripeTotalMismatch`.

Crash safety. Every POST carries the plan's idempotency key; every answered request and
its step are recorded in one transaction (:mod:`billing.stripe.session`). A re-run skips
recorded steps. A step left unrecorded by a crash is first looked up in Stripe (invoices
by ``metadata.gpumeter_invoice``, items by ``metadata.gpumeter_line``, credit notes by
``metadata.gpumeter_credit_note``, customers by search on ``metadata.gpumeter_tenant``) and
adopted; only what is not found is created, with the same key — so even after Stripe's
24 h key expiry nothing is duplicated, and within it a replay returns the same object. An
invoice whose Stripe copy is already finalized is left alone (its status and total are
checked); a draft whose items are complete is checked and finalized.

Audit: after each document, what was sent (items, amounts, keys, Stripe ids, no personal
data) becomes one ``stripe_sync`` entry of the audit log (``audit.record``), written once
per document — a run that finds the entry missing (lost to a crash) writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
import stripe

from audit.log import AuditLog
from audit.record import record_stripe_sync
from billing.errors import StripeSyncError, StripeTotalMismatch
from billing.stripe.documents import issued_documents
from billing.stripe.plan import Plan, adopt_items, eur, items_to_create, plan_document
from billing.stripe.session import Session, metadata
from gpumeter import store
from gpumeter.months import Month

Action = Literal["created", "resumed", "unchanged", "nothing_due"]


@dataclass(frozen=True)
class DocumentResult:
    number: str
    kind: str
    tenant: str
    stripe_customer_id: str
    stripe_id: str
    action: Action
    total_cents: int  # what Stripe must total: the legal document's due (its total less prepaid credits)
    stripe_total_cents: int  # Stripe's, after finalization (equal, or an error was raised)
    stripe_status: str


@dataclass(frozen=True)
class SyncReport:
    month: Month
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
        "items": [{"line": it.step, "idempotency_key": it.key, "amount": eur(it.amount_cents)} for it in plan.items],
        "total": eur(doc.total_cents),
        "due": eur(doc.collect_cents),
    }
    if doc.references:
        sent["references"] = doc.references
    return AuditRecord(
        doc.number,
        doc.tenant,
        str(doc.period),
        sent,
        {"stripe_id": result.stripe_id, "status": result.stripe_status, "total": eur(result.stripe_total_cents)},
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


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pusher:
    """The decisions of one run; every request and store write goes through ``session``."""

    session: Session
    days_until_due: int
    customers: dict[str, str] = field(default_factory=dict)

    def customer(self, plan: Plan) -> str:
        doc, s = plan.doc, self.session
        if doc.tenant in self.customers:
            return self.customers[doc.tenant]
        configured, recorded = s.known_customer(doc.tenant)
        if configured:
            found, source = configured, "tenants.csv"
        elif recorded:
            found, source = recorded, ""
        else:
            hits = s.search_customers(doc)
            if len(hits) > 1:
                raise StripeSyncError(
                    f"{len(hits)} Stripe customers carry gpumeter_tenant={doc.tenant}; "
                    "set stripe_customer in tenants.csv",
                    number=doc.number,
                )
            found, source = (str(hits[0].id), "found") if hits else (s.create_customer(doc), "created")
        if source:
            s.record_customer(doc.tenant, found, source)
        self.customers[doc.tenant] = found
        return found

    # ---- invoices ----
    def invoice(self, plan: Plan) -> DocumentResult:
        doc, s = plan.doc, self.session
        steps = s.steps(doc.number)
        if "finalize" in steps:
            return self._finished(plan, s.retrieve_invoice(doc, steps["finalize"]), "unchanged")
        customer = self.customer(plan)
        resumed = bool(steps)
        if "invoice" in steps:
            inv = s.retrieve_invoice(doc, steps["invoice"])
        else:
            found = self._find_invoice(plan, customer)
            if found is not None:
                inv, resumed = found, True
                s.record_step(doc.number, "invoice", found.id, None, None)
            else:
                inv = s.create_invoice(plan, customer, self.days_until_due)
        s.save_document(doc, customer, inv.id, str(inv.status))
        if inv.status != "draft":  # finalized in Stripe, but the answer never got recorded
            s.record_step(doc.number, "finalize", inv.id, None, None)
            return self._finished(plan, inv, "resumed")
        missing = items_to_create(plan, steps)
        if missing and resumed:
            adopted = adopt_items(plan, inv.id, s.items_of(doc, inv.id))
            for item in missing:
                if item.step in adopted:
                    s.record_step(doc.number, item.step, adopted[item.step].id, None, item.amount_cents)
            missing = [it for it in missing if it.step not in adopted]
        for item in missing:
            s.create_item(plan, item, customer, inv.id)
        draft = s.retrieve_invoice(doc, inv.id)
        if draft.status == "draft" and draft.total != doc.collect_cents:
            raise StripeTotalMismatch(
                f"Stripe draft {inv.id} totals {eur(draft.total)} EUR, the legal invoice leaves "
                f"{eur(doc.collect_cents)} EUR to pay; not finalized",
                number=doc.number,
            )
        if draft.status == "draft":
            final = s.finalize(plan, inv.id)
        else:
            final = draft
            s.record_step(doc.number, "finalize", inv.id, None, None)
        return self._finished(plan, final, "resumed" if resumed else "created")

    def _find_invoice(self, plan: Plan, customer: str) -> stripe.Invoice | None:
        doc = plan.doc
        hits = [
            inv
            for inv in self.session.invoices_of(doc, customer)
            if metadata(inv).get("gpumeter_invoice") == doc.number and inv.status != "void"
        ]
        if len(hits) > 1:
            raise StripeSyncError(f"{len(hits)} Stripe invoices carry this number", number=doc.number)
        return hits[0] if hits else None

    def _finished(self, plan: Plan, inv: stripe.Invoice, action: Action) -> DocumentResult:
        doc = plan.doc
        customer = inv.customer if isinstance(inv.customer, str) else getattr(inv.customer, "id", "")
        self.session.save_document(doc, str(customer), inv.id, str(inv.status))
        return _result(plan, str(customer), inv.id, action, inv.total, str(inv.status))

    # ---- credit notes ----
    def credit_note(self, plan: Plan) -> DocumentResult:
        doc, s = plan.doc, self.session
        steps = s.steps(doc.number)
        ref = s.pushed(doc.references or "")
        if ref is None or ref.kind != "invoice":
            raise StripeSyncError(
                f"invoice {doc.references} is not in Stripe yet; sync its month first", number=doc.number
            )
        invoice_id, customer = ref.stripe_id, ref.stripe_customer_id
        action: Action
        if "credit_note" in steps:
            note, action = s.retrieve_credit_note(doc, steps["credit_note"]), "unchanged"
        else:
            inv = s.retrieve_invoice(doc, invoice_id)
            hits = [
                cn
                for cn in s.credit_notes_of(doc, invoice_id)
                if metadata(cn).get("gpumeter_credit_note") == doc.number
            ]
            if hits:
                note, action = hits[0], "resumed"
                s.record_step(doc.number, "credit_note", note.id, None, doc.collect_cents)
            else:
                note, action = s.create_credit_note(plan, inv), "created"
        s.save_document(doc, customer, note.id, str(note.status))
        # The credited invoice's status may have moved (an open invoice credited to zero is paid).
        s.save_status(ref.number, str(s.retrieve_invoice(doc, invoice_id).status))
        return _result(plan, customer, note.id, action, note.total, str(note.status))


def _result(plan: Plan, customer: str, stripe_id: str, action: Action, total: int, status: str) -> DocumentResult:
    """The outcome of one document, once Stripe's total is the legal document's."""
    doc = plan.doc
    if total != doc.collect_cents:
        what = doc.kind.replace("_", " ")
        raise StripeTotalMismatch(
            f"Stripe {what} {stripe_id} ({status}) totals {eur(total)} EUR, "
            f"the legal {what} leaves {eur(doc.collect_cents)} EUR",
            number=doc.number,
        )
    return DocumentResult(
        doc.number, doc.kind, doc.tenant, customer, stripe_id, action, doc.collect_cents, total, status
    )


def sync_month(
    con: duckdb.DuckDBPyConnection,
    client: stripe.StripeClient,
    month: Month | str,
    *,
    days_until_due: int = 30,
    audit: AuditHook | None = audit_stripe_sync,
    clock: Callable[[], datetime] = _utcnow,
) -> SyncReport:
    """Push the documents issued for ``month`` (as the store froze them) to Stripe.

    Invoices go first (in number order), then credit notes. Every document is read,
    checked and planned before the first request, so a missing or altered document, a bad
    one or one over 250 items stops the run with nothing sent. Re-running is safe at any
    point (see the module docstring). After each document, ``audit`` records what was sent
    (default: one ``stripe_sync`` entry in the audit log, written once per document).
    """
    period = Month.parse(month)
    store.require_schema(con)
    plans = [plan_document(d) for d in issued_documents(con, period)]
    invoices = sorted((p for p in plans if p.doc.kind == "invoice"), key=lambda p: p.doc.number)
    notes = sorted((p for p in plans if p.doc.kind == "credit_note"), key=lambda p: p.doc.number)
    session = Session(con, client, clock)
    here = {p.doc.number for p in invoices}
    for p in notes:
        if p.doc.references not in here and session.pushed(p.doc.references or "") is None:
            raise StripeSyncError(
                f"references invoice {p.doc.references}, which is neither in {period} nor already in Stripe; "
                "nothing was sent",
                number=p.doc.number,
            )
    pusher = _Pusher(session, days_until_due)
    results = []
    for plan in [*invoices, *notes]:
        if plan.doc.kind == "credit_note" and not plan.doc.collect_cents:
            doc = plan.doc
            results.append(DocumentResult(doc.number, doc.kind, doc.tenant, "", "", "nothing_due", 0, 0, "not sent"))
            continue
        result = pusher.invoice(plan) if plan.doc.kind == "invoice" else pusher.credit_note(plan)
        if audit is not None:
            audit(con, audit_record(plan, result))
        results.append(result)
    return SyncReport(period, tuple(results), session.requests, session.posts)
