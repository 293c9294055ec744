"""One Stripe test-mode account held in memory: the objects and the operations on them.

Part of the Stripe *test double* (see :mod:`stripe_double.server`). Each operation gets
parameters already checked and typed by :mod:`stripe_double.params` and returns a JSON
object shaped like Stripe's, or raises :class:`ApiError` with Stripe's error envelope.

What is modelled, and where the double had to choose (marked "double:"):
- customers: create, retrieve, list (``email``), search (``metadata['k']:'v'``,
  ``email:'x'``, joined by ``AND``); ``balance`` (credit from credit notes) is applied to
  the next invoice at finalization.
- invoice items: ``amount`` (integer cents) or ``unit_amount_decimal`` (≤ 12 dp) ×
  ``quantity``/``quantity_decimal`` (double: the product is rounded half-up to the cent);
  ``invoice=`` attaches to a draft of the same customer and currency; without it the item
  is pending. At most 250 items per invoice: the 251st is refused.
- invoices: ``pending_invoice_items_behavior`` defaults to ``exclude``; ``include`` pulls
  the customer's pending items of the same currency. ``number`` is kept at finalization
  (double: a number already used by another invoice is refused); without one the double
  assigns ``DBL-NNNN``. ``finalize`` → ``open`` (``paid`` when nothing is due), ``pay``
  (``paid_out_of_band`` or a simulated card that can be told to decline), ``void``.
- credit notes on ``open``/``paid`` invoices: custom or invoice-line lines, pre-payment
  part reduces ``amount_remaining`` (double: an open invoice credited to zero becomes
  ``paid``), the post-payment part must be covered by ``credit_amount`` +
  ``out_of_band_amount`` (refunds are not modelled).
- metadata: ≤ 50 keys, key ≤ 40 chars without ``[``/``]``, value ≤ 500 chars;
  descriptions ≤ 500 chars.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

MAX_ITEMS_PER_INVOICE = 250
_SEARCH_TERM = re.compile(r"""^\s*(?:metadata\['([^']+)'\]|(email)):'((?:[^'\\]|\\.)*)'\s*$""")

Obj = dict[str, Any]


class ApiError(Exception):
    """A Stripe error response: status and ``{"error": {type, message, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Obj = {"error": {"type": type, "message": message, "param": param, "code": code}}
        if code is None:
            del self.body["error"]["code"]
        if param is None:
            del self.body["error"]["param"]


def _missing(kind: str, obj_id: str, param: str | None = None) -> ApiError:
    return ApiError(404 if param is None else 400, f"No such {kind}: '{obj_id}'", param=param, code="resource_missing")


@dataclass
class Account:
    """All objects of one account. Not thread-safe: the server serialises calls."""

    clock: Callable[[], int]
    default_currency: str = "usd"
    customers: dict[str, Obj] = field(default_factory=dict)
    invoiceitems: dict[str, Obj] = field(default_factory=dict)
    invoices: dict[str, Obj] = field(default_factory=dict)
    credit_notes: dict[str, Obj] = field(default_factory=dict)
    decline_payments: int = 0
    _seq: int = 0
    _order: dict[str, int] = field(default_factory=dict)

    # ---- helpers -------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        oid = f"{prefix}_dbl{self._seq:010d}"
        self._order[oid] = self._seq
        return oid

    def _base(self, prefix: str, kind: str) -> Obj:
        return {"id": self._new_id(prefix), "object": kind, "livemode": False, "created": self.clock()}

    @staticmethod
    def _metadata(value: Any, param: str = "metadata") -> dict[str, str]:
        if value is None or value == "":
            return {}
        assert isinstance(value, dict)
        if len(value) > 50:
            raise ApiError(400, "Metadata can have at most 50 keys.", param=param)
        out: dict[str, str] = {}
        for key, val in value.items():
            if len(key) > 40 or "[" in key or "]" in key:
                raise ApiError(
                    400,
                    f"Metadata keys can have a maximum length of 40 characters and may not contain "
                    f"square brackets; got {key!r}.",
                    param=f"{param}[{key}]",
                )
            if len(val) > 500:
                raise ApiError(
                    400, "Metadata values can have a maximum length of 500 characters.", param=f"{param}[{key}]"
                )
            if val != "":
                out[key] = val
        return out

    @staticmethod
    def _text(value: Any, param: str, limit: int = 500) -> str | None:
        if value is None:
            return None
        assert isinstance(value, str)
        if len(value) > limit:
            raise ApiError(400, f"Invalid string: {param} must be at most {limit} characters.", param=param)
        return value

    @staticmethod
    def _currency(value: str, param: str = "currency") -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ApiError(400, f"Invalid currency: {value}", param=param)
        return value.lower()

    def _customer(self, cid: Any, param: str = "customer") -> Obj:
        if not isinstance(cid, str) or cid not in self.customers:
            raise _missing("customer", str(cid), param)
        return self.customers[cid]

    def _invoice(self, iid: str, param: str | None = None) -> Obj:
        if iid not in self.invoices:
            raise _missing("invoice", iid, param)
        return self.invoices[iid]

    def _newest_first(self, objs: list[Obj]) -> list[Obj]:
        return sorted(objs, key=lambda o: self._order[o["id"]], reverse=True)

    def page(self, objs: list[Obj], params: Obj, url: str) -> Obj:
        """A Stripe list object: newest first, ``limit`` (1–100), ``starting_after``."""
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise ApiError(400, "Invalid limit: must be between 1 and 100", param="limit")
        ordered = self._newest_first(objs)
        after = params.get("starting_after")
        if after is not None:
            ids = [o["id"] for o in ordered]
            if after not in ids:
                raise ApiError(400, f"Invalid starting_after id: {after}", param="starting_after")
            ordered = ordered[ids.index(after) + 1 :]
        data = ordered[:limit]
        return {"object": "list", "data": data, "has_more": len(ordered) > limit, "url": url}

    # ---- customers -----------------------------------------------------------------
    def create_customer(self, p: Obj) -> Obj:
        tax_exempt = p.get("tax_exempt", "none")
        if tax_exempt not in ("none", "exempt", "reverse"):
            raise ApiError(400, f"Invalid tax_exempt: {tax_exempt}", param="tax_exempt")
        cus = self._base("cus", "customer")
        cus.update(
            {
                "address": p.get("address"),
                "balance": 0,
                "currency": None,
                "default_source": None,
                "delinquent": False,
                "description": self._text(p.get("description"), "description"),
                "discount": None,
                "email": p.get("email"),
                "invoice_prefix": p.get("invoice_prefix", cus["id"][-8:].upper()),
                "metadata": self._metadata(p.get("metadata")),
                "name": p.get("name"),
                "phone": p.get("phone"),
                "preferred_locales": p.get("preferred_locales", []),
                "shipping": None,
                "tax_exempt": tax_exempt,
                "test_clock": None,
            }
        )
        self.customers[cus["id"]] = cus
        return cus

    def retrieve_customer(self, cid: str) -> Obj:
        if cid not in self.customers:
            raise _missing("customer", cid)
        return self.customers[cid]

    def list_customers(self, p: Obj) -> Obj:
        found = [c for c in self.customers.values() if "email" not in p or c["email"] == p["email"]]
        return self.page(found, p, "/v1/customers")

    def search_customers(self, p: Obj) -> Obj:
        terms = re.split(r"\s+AND\s+", p["query"].strip())
        conds: list[tuple[str | None, str]] = []
        for term in terms:
            m = _SEARCH_TERM.match(term)
            if m is None:
                raise ApiError(400, f"stripe test double: unsupported search query term {term!r}", param="query")
            value = re.sub(r"\\(.)", r"\1", m.group(3))
            conds.append((m.group(1), value))

        def hit(c: Obj) -> bool:
            return all((c["metadata"].get(k) if k is not None else c["email"]) == v for k, v in conds)

        found = self._newest_first([c for c in self.customers.values() if hit(c)])
        limit = p.get("limit", 10)
        return {
            "object": "search_result",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "next_page": None,
            "url": "/v1/customers/search",
        }

    # ---- invoice items ---------------------------------------------------------------
    def create_invoiceitem(self, p: Obj) -> Obj:
        if "customer" not in p:
            raise ApiError(400, "Missing required param: customer.", param="customer")
        cus = self._customer(p["customer"])
        inv = None
        if "invoice" in p:
            inv = self._invoice(p["invoice"], "invoice")
            if inv["status"] != "draft":
                raise ApiError(
                    400,
                    f"Invoice {inv['id']} is {inv['status']}: invoice items can only be added to draft invoices.",
                    param="invoice",
                )
            if inv["customer"] != cus["id"]:
                raise ApiError(400, "The invoice item's customer must match the invoice's customer.", param="invoice")
            if len(inv["_items"]) >= MAX_ITEMS_PER_INVOICE:
                raise ApiError(
                    400,
                    f"An invoice can have at most {MAX_ITEMS_PER_INVOICE} invoice items; "
                    f"{inv['id']} already has {len(inv['_items'])}.",
                    param="invoice",
                )
        if "currency" in p:
            currency = self._currency(p["currency"])
        elif inv is not None:
            currency = inv["currency"]
        else:
            raise ApiError(400, "Missing required param: currency.", param="currency")
        if inv is not None and currency != inv["currency"]:
            raise ApiError(
                400,
                f"The currency of the invoice item ({currency}) must match the invoice's currency ({inv['currency']}).",
                param="currency",
            )
        amount, quantity, unit = self._item_amount(p)
        period = p.get("period")
        now = self.clock()
        if period is not None and period["start"] > period["end"]:
            raise ApiError(400, "period[end] must not be before period[start].", param="period[end]")
        item = self._base("ii", "invoiceitem")
        item.update(
            {
                "amount": amount,
                "currency": currency,
                "customer": cus["id"],
                "date": now,
                "description": self._text(p.get("description"), "description"),
                "discountable": p.get("discountable", True),
                "discounts": [],
                "invoice": inv["id"] if inv is not None else None,
                "metadata": self._metadata(p.get("metadata")),
                "period": period if period is not None else {"start": now, "end": now},
                "proration": False,
                "quantity": quantity,
                "unit_amount_decimal": None if unit is None else str(unit),
                "test_clock": None,
            }
        )
        self.invoiceitems[item["id"]] = item
        if inv is not None:
            inv["_items"].append(item["id"])
            self._recompute(inv)
        return item

    @staticmethod
    def _item_amount(p: Obj) -> tuple[int, Any, Decimal | None]:
        has_amount = "amount" in p
        has_unit = "unit_amount_decimal" in p
        if has_amount and has_unit:
            raise ApiError(400, "You may only specify one of these parameters: amount, unit_amount_decimal.")
        if "quantity" in p and "quantity_decimal" in p:
            raise ApiError(400, "You may only specify one of these parameters: quantity, quantity_decimal.")
        if has_amount:
            if "quantity" in p or "quantity_decimal" in p:
                raise ApiError(400, "quantity cannot be combined with amount; amount is the item's total.")
            return int(p["amount"]), 1, None
        if not has_unit:
            raise ApiError(400, "Missing required param: amount.", param="amount")
        unit: Decimal = p["unit_amount_decimal"]
        if unit.as_tuple().exponent < -12:  # type: ignore[operator]
            raise ApiError(400, "unit_amount_decimal can have at most 12 decimal places.", param="unit_amount_decimal")
        qty = p.get("quantity_decimal", Decimal(p.get("quantity", 1)))
        if qty < 0:
            raise ApiError(400, "quantity must be non-negative.", param="quantity")
        amount = int((unit * qty).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        shown = p.get("quantity", int(qty) if qty == qty.to_integral_value() else str(qty))
        return amount, shown, unit

    def list_invoiceitems(self, p: Obj) -> Obj:
        def keep(i: Obj) -> bool:
            if "invoice" in p and i["invoice"] != p["invoice"]:
                return False
            if "customer" in p and i["customer"] != p["customer"]:
                return False
            return not ("pending" in p and (i["invoice"] is None) != p["pending"])

        return self.page([i for i in self.invoiceitems.values() if keep(i)], p, "/v1/invoiceitems")

    def retrieve_invoiceitem(self, iid: str) -> Obj:
        if iid not in self.invoiceitems:
            raise _missing("invoiceitem", iid)
        return self.invoiceitems[iid]

    # ---- invoices ----------------------------------------------------------------------
    def create_invoice(self, p: Obj) -> Obj:
        if "customer" not in p:
            raise ApiError(400, "Missing required param: customer.", param="customer")
        cus = self._customer(p["customer"])
        method = p.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise ApiError(400, f"Invalid collection_method: {method}", param="collection_method")
        if method == "send_invoice" and "days_until_due" not in p and "due_date" not in p:
            raise ApiError(
                400,
                "Invoices with collection_method=send_invoice need days_until_due or due_date.",
                param="days_until_due",
            )
        if method != "send_invoice" and ("days_until_due" in p or "due_date" in p):
            raise ApiError(
                400, "days_until_due and due_date need collection_method=send_invoice.", param="days_until_due"
            )
        behavior = p.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("exclude", "include"):
            raise ApiError(
                400, f"Invalid pending_invoice_items_behavior: {behavior}", param="pending_invoice_items_behavior"
            )
        number = p.get("number")
        if number is not None:
            self._number_free(number, None)
        currency = self._currency(p["currency"]) if "currency" in p else (cus["currency"] or self.default_currency)
        inv = self._base("in", "invoice")
        inv.update(
            {
                "account_country": "FR",
                "amount_due": 0,
                "amount_paid": 0,
                "amount_remaining": 0,
                "attempt_count": 0,
                "attempted": False,
                "auto_advance": p.get("auto_advance", False),
                "collection_method": method,
                "currency": currency,
                "customer": cus["id"],
                "days_until_due": p.get("days_until_due"),
                "description": self._text(p.get("description"), "description"),
                "due_date": p.get("due_date"),
                "ending_balance": None,
                "footer": self._text(p.get("footer"), "footer"),
                "metadata": self._metadata(p.get("metadata")),
                "number": number,
                "post_payment_credit_notes_amount": 0,
                "pre_payment_credit_notes_amount": 0,
                "starting_balance": 0,
                "status": "draft",
                "status_transitions": {
                    "finalized_at": None,
                    "marked_uncollectible_at": None,
                    "paid_at": None,
                    "voided_at": None,
                },
                "subtotal": 0,
                "subtotal_excluding_tax": 0,
                "total": 0,
                "total_excluding_tax": 0,
                "_items": [],
            }
        )
        self.invoices[inv["id"]] = inv
        if behavior == "include":
            pending = [
                i
                for i in self._newest_first(list(self.invoiceitems.values()))[::-1]
                if i["customer"] == cus["id"] and i["invoice"] is None and i["currency"] == currency
            ]
            for item in pending[:MAX_ITEMS_PER_INVOICE]:
                item["invoice"] = inv["id"]
                inv["_items"].append(item["id"])
        self._recompute(inv)
        return inv

    def _number_free(self, number: str, own: str | None) -> None:
        for other in self.invoices.values():
            if other["number"] == number and other["id"] != own:
                raise ApiError(400, f"Invoice number {number} is already used by {other['id']}.", param="number")

    def _recompute(self, inv: Obj) -> None:
        subtotal = sum(self.invoiceitems[i]["amount"] for i in inv["_items"])
        inv.update(subtotal=subtotal, subtotal_excluding_tax=subtotal, total=subtotal, total_excluding_tax=subtotal)
        if inv["status"] == "draft":
            inv.update(amount_due=subtotal, amount_remaining=subtotal)

    def lines_of(self, inv: Obj) -> list[Obj]:
        lines = []
        for iid in inv["_items"]:
            item = self.invoiceitems[iid]
            lines.append(
                {
                    "id": "il_" + iid[3:],
                    "object": "line_item",
                    "amount": item["amount"],
                    "currency": item["currency"],
                    "description": item["description"],
                    "invoice": inv["id"],
                    "livemode": False,
                    "metadata": item["metadata"],
                    "parent": {"type": "invoice_item_details", "invoice_item_details": {"invoice_item": iid}},
                    "period": item["period"],
                    "quantity": item["quantity"],
                }
            )
        return lines

    def render_invoice(self, inv: Obj) -> Obj:
        """The public form: private fields dropped, the first 10 lines embedded."""
        out = {k: v for k, v in inv.items() if not k.startswith("_")}
        lines = self.lines_of(inv)
        out["lines"] = {
            "object": "list",
            "data": lines[:10],
            "has_more": len(lines) > 10,
            "total_count": len(lines),
            "url": f"/v1/invoices/{inv['id']}/lines",
        }
        return copy.deepcopy(out)

    def list_invoices(self, p: Obj) -> Obj:
        found = [
            i
            for i in self.invoices.values()
            if ("customer" not in p or i["customer"] == p["customer"])
            and ("status" not in p or i["status"] == p["status"])
        ]
        return self.page(found, p, "/v1/invoices")

    def finalize_invoice(self, iid: str, p: Obj) -> Obj:
        inv = self._invoice(iid)
        if inv["status"] != "draft":
            raise ApiError(
                400,
                f"This invoice is already finalized ({inv['status']}); you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        now = self.clock()
        if inv["number"] is None:
            inv["number"] = f"DBL-{sum(1 for i in self.invoices.values() if i['number']) + 1:04d}"
        else:
            self._number_free(inv["number"], inv["id"])
        if "auto_advance" in p:
            inv["auto_advance"] = p["auto_advance"]
        self._recompute(inv)
        cus = self.customers[inv["customer"]]
        applied = min(inv["total"], -cus["balance"]) if cus["balance"] < 0 else 0
        inv["starting_balance"] = cus["balance"]
        cus["balance"] += applied
        inv["ending_balance"] = cus["balance"]
        due = inv["total"] - applied
        inv.update(amount_due=due, amount_remaining=due, status="open")
        inv["status_transitions"]["finalized_at"] = now
        if inv["collection_method"] == "send_invoice" and inv["days_until_due"] is not None:
            inv["due_date"] = now + 86400 * inv["days_until_due"]
        if due == 0:
            self._mark_paid(inv, now)
        return inv

    def _mark_paid(self, inv: Obj, now: int) -> None:
        inv["amount_paid"] += inv["amount_remaining"]
        inv["amount_remaining"] = 0
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = now

    def pay_invoice(self, iid: str, p: Obj) -> Obj:
        inv = self._invoice(iid)
        if inv["status"] != "open":
            raise ApiError(
                400, f"Invoice {iid} is {inv['status']}; only open invoices can be paid.", code="invoice_not_open"
            )
        inv["attempted"] = True
        if not p.get("paid_out_of_band", False):
            inv["attempt_count"] += 1
            if self.decline_payments > 0:
                self.decline_payments -= 1
                raise ApiError(402, "Your card was declined.", type="card_error", code="card_declined")
        self._mark_paid(inv, self.clock())
        return inv

    def void_invoice(self, iid: str) -> Obj:
        inv = self._invoice(iid)
        if inv["status"] not in ("open", "uncollectible"):
            raise ApiError(400, f"Invoice {iid} is {inv['status']}; only open or uncollectible invoices can be voided.")
        inv["status"] = "void"
        inv["status_transitions"]["voided_at"] = self.clock()
        return inv

    # ---- credit notes ----------------------------------------------------------------
    def create_credit_note(self, p: Obj) -> Obj:
        inv = self._invoice(p["invoice"], "invoice")
        if inv["status"] not in ("open", "paid"):
            raise ApiError(
                400, f"Credit notes need an open or paid invoice; {inv['id']} is {inv['status']}.", param="invoice"
            )
        reason = p.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "order_change", "product_unsatisfactory"):
            raise ApiError(400, f"Invalid reason: {reason}", param="reason")
        cn_id = self._new_id("cn")
        lines = [self._credit_line(cn_id, inv, i, line) for i, line in enumerate(p.get("lines", []))]
        if not lines and "amount" not in p:
            raise ApiError(400, "A credit note needs lines or an amount.", param="lines")
        total = sum(line["amount"] for line in lines) if lines else int(p["amount"])
        if lines and "amount" in p and int(p["amount"]) != total:
            raise ApiError(400, f"amount ({p['amount']}) must equal the sum of the lines ({total}).", param="amount")
        if not lines:
            lines = [
                self._credit_line(
                    cn_id, inv, 0, {"type": "custom_line_item", "unit_amount": total, "description": "Credit"}
                )
            ]
        if total <= 0:
            raise ApiError(400, "A credit note's amount must be positive.", param="amount")
        creditable = inv["total"] - inv["pre_payment_credit_notes_amount"] - inv["post_payment_credit_notes_amount"]
        if total > creditable:
            raise ApiError(
                400,
                f"The credit note amount ({total}) exceeds what can still be credited on {inv['id']} ({creditable}).",
                param="amount",
            )
        pre = min(total, inv["amount_remaining"]) if inv["status"] == "open" else 0
        post = total - pre
        credit = int(p.get("credit_amount", 0))
        out_of_band = int(p.get("out_of_band_amount", 0))
        if credit + out_of_band != post:
            raise ApiError(
                400,
                f"credit_amount + refund_amount + out_of_band_amount ({credit + out_of_band}) must equal the "
                f"post-payment amount of the credit note ({post}).",
            )
        now = self.clock()
        count = sum(1 for c in self.credit_notes.values() if c["invoice"] == inv["id"]) + 1
        cn: Obj = {
            "id": cn_id,
            "object": "credit_note",
            "livemode": False,
            "created": now,
            "amount": total,
            "amount_shipping": 0,
            "currency": inv["currency"],
            "customer": inv["customer"],
            "customer_balance_transaction": None,
            "discount_amount": 0,
            "invoice": inv["id"],
            "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/credit_notes/{cn_id}/lines"},
            "memo": self._text(p.get("memo"), "memo"),
            "metadata": self._metadata(p.get("metadata")),
            "number": f"{inv['number']}-CN-{count:02d}",
            "out_of_band_amount": out_of_band or None,
            "post_payment_amount": post,
            "pre_payment_amount": pre,
            "reason": reason,
            "status": "issued",
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "total": total,
            "total_excluding_tax": total,
            "type": "pre_payment" if post == 0 else ("post_payment" if pre == 0 else "mixed"),
            "voided_at": None,
        }
        inv["pre_payment_credit_notes_amount"] += pre
        inv["post_payment_credit_notes_amount"] += post
        inv["amount_due"] -= pre
        inv["amount_remaining"] -= pre
        if inv["status"] == "open" and inv["amount_remaining"] == 0:
            inv["status"] = "paid"
            inv["status_transitions"]["paid_at"] = now
        if credit:
            self.customers[inv["customer"]]["balance"] -= credit
            cn["customer_balance_transaction"] = self._new_id("cbtxn")
        self.credit_notes[cn_id] = cn
        return cn

    def _credit_line(self, cn_id: str, inv: Obj, index: int, line: Obj) -> Obj:
        param = f"lines[{index}]"
        for unsupported in ("tax_amounts", "tax_rates", "discounts"):
            if unsupported in line:
                raise ApiError(400, f"stripe test double: {param}[{unsupported}] is not implemented", param=param)
        kind = line["type"]
        quantity = line.get("quantity", 1)
        if kind == "custom_line_item":
            if "description" not in line:
                raise ApiError(400, f"Missing required param: {param}[description].", param=f"{param}[description]")
            if "unit_amount" not in line:
                raise ApiError(400, f"Missing required param: {param}[unit_amount].", param=f"{param}[unit_amount]")
            amount = int(line["unit_amount"]) * quantity
            ref = None
        elif kind == "invoice_line_item":
            ref = line.get("invoice_line_item")
            source = {x["id"]: x for x in self.lines_of(inv)}.get(ref or "")
            if source is None:
                raise ApiError(400, f"No such invoice line item: '{ref}'", param=f"{param}[invoice_line_item]")
            amount = int(line["amount"]) if "amount" in line else int(source["amount"])
        else:
            raise ApiError(400, f"Invalid {param}[type]: {kind}", param=f"{param}[type]")
        return {
            "id": f"cnli_{cn_id[3:]}_{index}",
            "object": "credit_note_line_item",
            "amount": amount,
            "description": self._text(line.get("description"), f"{param}[description]"),
            "invoice_line_item": ref,
            "livemode": False,
            "metadata": self._metadata(line.get("metadata"), f"{param}[metadata]"),
            "quantity": quantity,
            "type": kind,
            "unit_amount": line.get("unit_amount"),
        }

    def retrieve_credit_note(self, cid: str) -> Obj:
        if cid not in self.credit_notes:
            raise _missing("credit_note", cid)
        return self.credit_notes[cid]

    def list_credit_notes(self, p: Obj) -> Obj:
        found = [
            c
            for c in self.credit_notes.values()
            if ("invoice" not in p or c["invoice"] == p["invoice"])
            and ("customer" not in p or c["customer"] == p["customer"])
        ]
        return self.page(found, p, "/v1/credit_notes")

    # ---- rendering -------------------------------------------------------------------
    def public(self, obj: Obj, expand: list[str] | None = None) -> Obj:
        """The JSON a client sees: invoices rendered, ``expand`` paths resolved."""
        if obj.get("object") in ("list", "search_result"):
            out = dict(obj)
            inner = [e[len("data.") :] for e in expand or [] if e.startswith("data.")]
            if any(not e.startswith("data.") for e in expand or []):
                bad = next(e for e in expand or [] if not e.startswith("data."))
                raise ApiError(400, f"This property cannot be expanded ({bad}).", param="expand")
            out["data"] = [self.public(o, inner) for o in obj["data"]]
            return out
        out = self.render_invoice(obj) if obj.get("object") == "invoice" else copy.deepcopy(obj)
        for path in expand or []:
            if path == "customer" and isinstance(out.get("customer"), str):
                out["customer"] = copy.deepcopy(self.customers[out["customer"]])
            elif path == "invoice" and isinstance(out.get("invoice"), str):
                out["invoice"] = self.render_invoice(self.invoices[out["invoice"]])
            else:
                raise ApiError(400, f"This property cannot be expanded ({path}).", param="expand")
        return out
