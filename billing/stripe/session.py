"""The I/O of a Stripe sync: requests to ``stripe.StripeClient``, each recorded in the store.

Every request goes through :meth:`Session.call`: it is sent (the SDK retries transient
failures with the same idempotency key), then written to ``stripe_requests`` — and, for a
request that completes a step of a document, the step to ``stripe_steps`` — in **one**
DuckDB transaction. A refused request is logged too and raised as
:class:`~billing.errors.StripeRequestError`. A crash between Stripe's answer and that commit
leaves the step unrecorded; :mod:`billing.stripe.sync` then finds the object in Stripe
(the ``find:*`` lookups here) and adopts it.

The session also keeps the store's view of each pushed document (``stripe_documents``) and
of each tenant's Stripe customer (``stripe_customers``). Times come from the injected clock
and are UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import duckdb
import stripe

from billing.errors import StripeRequestError, StripeSyncError
from billing.stripe.documents import Document
from billing.stripe.plan import (
    FoundItem,
    Plan,
    PlannedItem,
    credit_note_params,
    customer_key,
    customer_params,
    invoice_params,
    item_params,
)
from gpumeter import store

T = TypeVar("T")


@dataclass(frozen=True)
class PushedDocument:
    """What the store recorded of a document already pushed (``stripe_documents``)."""

    number: str
    kind: str
    stripe_customer_id: str
    stripe_id: str


def metadata(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict (empty when it has none)."""
    meta = getattr(obj, "metadata", None)
    return dict(meta.to_dict()) if meta is not None else {}


def _quote(text: str) -> str:
    """A value inside a Stripe search query's single quotes."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


@dataclass
class Session:
    con: duckdb.DuckDBPyConnection
    client: stripe.StripeClient
    clock: Callable[[], datetime]
    requests: int = 0  # requests sent by this session (GET and POST)
    posts: int = 0  # of which POSTs, each with an idempotency key

    # ---- one request: send, log, and (optionally) record the step, atomically ----
    def call(
        self,
        doc: Document,
        step: str,
        method: str,
        path: str,
        send: Callable[[], T],
        *,
        key: str | None = None,
        amount_cents: int | None = None,
        record_step: bool = False,
    ) -> T:
        sent_at = self.clock()
        self.requests += 1
        self.posts += method == "POST"
        log = {
            "sent_at": sent_at,
            "number": doc.number,
            "tenant": doc.tenant,
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
                number=doc.number,
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
                if not isinstance(object_id, str):
                    raise StripeSyncError(f"Stripe answered step {step} ({method} {path}) without an object id")
                self.record_step(doc.number, step, object_id, key, amount_cents)
        return obj

    def pages(self, doc: Document, step: str, path: str, fetch: Callable[[str | None], Any]) -> Iterator[Any]:
        """Every object of a Stripe list, one logged GET per page."""
        after: str | None = None
        while True:
            page = self.call(doc, step, "GET", path, partial(fetch, after))
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    # ---- the store's side ----
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

    def steps(self, number: str) -> dict[str, str]:
        """The recorded steps of a document: step -> Stripe object id."""
        rows = store.run(self.con, "stripe_steps_done", {"number": number}).fetchall()
        return {str(step): str(oid) for step, oid, _amount in rows}

    def save_document(self, doc: Document, customer: str, stripe_id: str, status: str) -> None:
        store.run(
            self.con,
            "stripe_document_upsert",
            {
                "number": doc.number,
                "kind": doc.kind,
                "tenant": doc.tenant,
                "period": str(doc.period),
                "references_number": doc.references,
                "stripe_customer_id": customer,
                "stripe_id": stripe_id,
                "total_cents": doc.total_cents,
                "stripe_status": status,
                "at": self.clock(),
            },
        )

    def save_status(self, number: str, status: str) -> None:
        store.run(self.con, "stripe_document_status", {"number": number, "stripe_status": status, "at": self.clock()})

    def pushed(self, number: str) -> PushedDocument | None:
        """The store's record of document ``number`` in Stripe, if it was pushed."""
        row = store.run(self.con, "stripe_document_get", {"number": number}).fetchone()
        return PushedDocument(str(row[0]), str(row[1]), str(row[5]), str(row[6])) if row else None

    def known_customer(self, tenant: str) -> tuple[str | None, str | None]:
        """(the customer tenants.csv names, the one recorded earlier); either may be None."""
        row = store.run(self.con, "stripe_customer_lookup", {"tenant": tenant}).fetchone()
        return (str(row[0]) if row[0] else None, str(row[1]) if row[1] else None) if row else (None, None)

    def record_customer(self, tenant: str, customer: str, source: str) -> None:
        store.run(
            self.con,
            "stripe_customer_record",
            {"tenant": tenant, "customer_id": customer, "source": source, "at": self.clock()},
        )

    # ---- Stripe's side: customers ----
    def search_customers(self, doc: Document) -> list[Any]:
        query = f"metadata['gpumeter_tenant']:'{_quote(doc.tenant)}'"
        return list(
            self.call(
                doc,
                "find:customer",
                "GET",
                "/v1/customers/search",
                lambda: self.client.v1.customers.search(params={"query": query, "limit": 10}),
            ).data
        )

    def create_customer(self, doc: Document) -> str:
        params, key = customer_params(doc.tenant), customer_key(doc.tenant)
        created = self.call(
            doc,
            "customer",
            "POST",
            "/v1/customers",
            lambda: self.client.v1.customers.create(params=params, options={"idempotency_key": key}),
            key=key,
        )
        return str(created.id)

    # ---- invoices ----
    def retrieve_invoice(self, doc: Document, invoice_id: str) -> stripe.Invoice:
        return self.call(
            doc, "check", "GET", f"/v1/invoices/{invoice_id}", lambda: self.client.v1.invoices.retrieve(invoice_id)
        )

    def invoices_of(self, doc: Document, customer: str) -> Iterator[stripe.Invoice]:
        return self.pages(
            doc,
            "find:invoice",
            "/v1/invoices",
            lambda after: self.client.v1.invoices.list(
                params={"customer": customer, "limit": 100, **({"starting_after": after} if after else {})}
            ),
        )

    def create_invoice(self, plan: Plan, customer: str, days_until_due: int) -> stripe.Invoice:
        params, key = invoice_params(plan, customer, days_until_due), plan.key("invoice")
        return self.call(
            plan.doc,
            "invoice",
            "POST",
            "/v1/invoices",
            lambda: self.client.v1.invoices.create(params=params, options={"idempotency_key": key}),
            key=key,
            record_step=True,
        )

    def items_of(self, doc: Document, invoice_id: str) -> Iterator[FoundItem]:
        for item in self.pages(
            doc,
            "find:items",
            "/v1/invoiceitems",
            lambda after: self.client.v1.invoice_items.list(
                params={"invoice": invoice_id, "limit": 100, **({"starting_after": after} if after else {})}
            ),
        ):
            yield FoundItem(str(item.id), metadata(item), int(item.amount))

    def create_item(self, plan: Plan, item: PlannedItem, customer: str, invoice_id: str) -> None:
        params = item_params(plan, item, customer, invoice_id)
        self.call(
            plan.doc,
            item.step,
            "POST",
            "/v1/invoiceitems",
            partial(self.client.v1.invoice_items.create, params=params, options={"idempotency_key": item.key}),
            key=item.key,
            amount_cents=item.amount_cents,
            record_step=True,
        )

    def finalize(self, plan: Plan, invoice_id: str) -> stripe.Invoice:
        key = plan.key("finalize")
        return self.call(
            plan.doc,
            "finalize",
            "POST",
            f"/v1/invoices/{invoice_id}/finalize",
            lambda: self.client.v1.invoices.finalize_invoice(
                invoice_id, params={"auto_advance": False}, options={"idempotency_key": key}
            ),
            key=key,
            amount_cents=plan.doc.collect_cents,
            record_step=True,
        )

    # ---- credit notes ----
    def retrieve_credit_note(self, doc: Document, note_id: str) -> stripe.CreditNote:
        return self.call(
            doc, "check", "GET", f"/v1/credit_notes/{note_id}", lambda: self.client.v1.credit_notes.retrieve(note_id)
        )

    def credit_notes_of(self, doc: Document, invoice_id: str) -> Iterator[stripe.CreditNote]:
        return self.pages(
            doc,
            "find:credit_note",
            "/v1/credit_notes",
            lambda after: self.client.v1.credit_notes.list(
                params={"invoice": invoice_id, "limit": 100, **({"starting_after": after} if after else {})}
            ),
        )

    def create_credit_note(self, plan: Plan, invoice: stripe.Invoice) -> stripe.CreditNote:
        params = credit_note_params(plan, invoice.id, str(invoice.status), invoice.amount_remaining)
        key = plan.key("credit_note")
        return self.call(
            plan.doc,
            "credit_note",
            "POST",
            "/v1/credit_notes",
            lambda: self.client.v1.credit_notes.create(params=params, options={"idempotency_key": key}),
            key=key,
            amount_cents=plan.doc.collect_cents,
            record_step=True,
        )
