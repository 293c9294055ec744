"""The Stripe test double itself: it must refuse what Stripe refuses, or the sync tests prove nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe.params import CreditNoteCreateParamsLine, InvoiceCreateParams

from tests.stripe_double import StripeDouble
from tests.stripe_double.documents import API_KEY, make_client

pytest_plugins = ["tests.stripe_double.fixtures"]


def raw(
    double: StripeDouble, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A request without the SDK: (status, JSON body, headers)."""
    req = urllib.request.Request(  # noqa: S310 - the double's http URL
        double.url + path,
        data=body.encode() if method == "POST" else None,
        method=method,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"}
        | (headers or {}),
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def draft(client: stripe.StripeClient, **extra: Any) -> tuple[str, str]:
    cus = client.v1.customers.create()
    params: InvoiceCreateParams = {"customer": cus.id, "currency": "eur"}
    params.update(extra)  # type: ignore[typeddict-item]  # extra keys are InvoiceCreateParams keys
    inv = client.v1.invoices.create(params=params)
    return cus.id, inv.id


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/invoices", "customer=cus_x&bogus=1", "bogus"),
        ("/v1/invoiceitems", "customer=cus_x&amount=1&period[start]=1&period[end]=2&period[bogus]=3", "period[bogus]"),
        ("/v1/credit_notes", "invoice=in_x&lines[0][type]=custom_line_item&lines[0][colour]=red", "lines[0][colour]"),
        ("/v1/customers", "idempotency_key=abc", "idempotency_key"),  # a client option, not a wire parameter
    ],
)
def test_unknown_parameters_are_refused_like_stripe(
    stripe_double: StripeDouble, path: str, body: str, param: str
) -> None:
    status, payload, _ = raw(stripe_double, "POST", path, body)
    assert status == 400
    assert payload == {
        "error": {"type": "invalid_request_error", "message": f"Received unknown parameter: {param}", "param": param}
    }
    assert stripe_double.objects("customers") == stripe_double.objects("invoices") == []


def test_sdk_typed_checks(stripe_client: stripe.StripeClient, stripe_double: StripeDouble) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Received unknown parameter: bogus"):
        stripe_client.raw_request("post", "/v1/customers", bogus="1")
    with pytest.raises(stripe.InvalidRequestError, match="Missing required param: invoice"):
        stripe_client.raw_request("post", "/v1/credit_notes", memo="x")
    with pytest.raises(stripe.InvalidRequestError, match=r"Invalid integer: 12\.5"):
        stripe_client.raw_request("post", "/v1/invoiceitems", customer="cus_x", amount="12.5")
    with pytest.raises(stripe.InvalidRequestError, match="Invalid boolean: maybe"):
        stripe_client.raw_request("post", "/v1/invoices", customer="cus_x", auto_advance="maybe")
    # Declared by the SDK, not implemented by the double: refused, never silently ignored.
    with pytest.raises(stripe.InvalidRequestError, match="not implemented by this double") as info:
        stripe_client.v1.invoices.create(params={"customer": "cus_x", "automatic_tax": {"enabled": True}})
    assert info.value.code == "double_unsupported_parameter"


def test_auth(stripe_double: StripeDouble) -> None:
    status, payload, _ = raw(stripe_double, "GET", "/v1/customers", headers={"Authorization": ""})
    assert status == 401 and "did not provide an API key" in payload["error"]["message"]
    with pytest.raises(stripe.AuthenticationError):
        make_client(stripe_double, api_key="sk_live_nope").v1.customers.list()
    status, _, _ = raw(stripe_double, "GET", "/v1/nothing")
    assert status == 404


def test_idempotency_like_stripe(stripe_double: StripeDouble) -> None:
    client = make_client(stripe_double)
    opts: Any = {"idempotency_key": "k-1"}
    first = client.v1.customers.create(params={"metadata": {"a": "1"}}, options=opts)
    again = client.v1.customers.create(params={"metadata": {"a": "1"}}, options=opts)
    assert again.id == first.id and again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        client.v1.customers.create(params={"metadata": {"a": "2"}}, options=opts)
    with pytest.raises(stripe.IdempotencyError, match="same endpoint"):
        client.v1.invoices.create(params={"customer": first.id}, options=opts)
    # Keys are scoped per API key.
    other = make_client(stripe_double, api_key="sk_test_other_account_key")
    assert other.v1.customers.create(params={"metadata": {"a": "1"}}, options=opts).id != first.id
    # Errors raised while the endpoint ran are saved and replayed too (same status, same body).
    _, inv = draft(client)
    client.v1.invoices.finalize_invoice(inv)
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.invoices.finalize_invoice(inv, options={"idempotency_key": "fin-twice"})
        errors.append((info.value.http_status, info.value.http_body))
    assert errors[0] == errors[1]
    assert stripe_double.requests("POST", f"/v1/invoices/{inv}/finalize")[-1].replayed
    assert len(stripe_double.objects("customers")) == 3


def test_invoice_lifecycle_and_limits(stripe_client: stripe.StripeClient, stripe_double: StripeDouble) -> None:
    cus, inv = draft(stripe_client, auto_advance=False, collection_method="send_invoice", days_until_due=30)
    pending = stripe_client.v1.invoice_items.create(params={"customer": cus, "amount": 500, "currency": "eur"})
    for i in range(250):
        stripe_client.v1.invoice_items.create(params={"customer": cus, "invoice": inv, "amount": i})
    with pytest.raises(stripe.InvalidRequestError, match="at most 250 invoice items"):
        stripe_client.v1.invoice_items.create(params={"customer": cus, "invoice": inv, "amount": 1})
    item = stripe_client.v1.invoice_items.create(
        params={
            "customer": cus,
            "currency": "eur",
            "quantity_decimal": Decimal("2.5"),
            "unit_amount_decimal": Decimal("0.123456789012"),
            "description": "x" * 500,
        }
    )
    assert item.amount == 0 and item.invoice is None
    with pytest.raises(stripe.InvalidRequestError, match="500 characters"):
        stripe_client.v1.invoice_items.create(
            params={"customer": cus, "amount": 1, "currency": "eur", "description": "x" * 501}
        )
    with pytest.raises(stripe.InvalidRequestError, match="maximum length of 40"):
        stripe_client.v1.customers.create(params={"metadata": {"k" * 41: "v"}})
    with pytest.raises(stripe.InvalidRequestError, match="at most 50 keys"):
        stripe_client.v1.customers.create(params={"metadata": {f"k{i}": "v" for i in range(51)}})
    with pytest.raises(stripe.InvalidRequestError, match="500 characters"):
        stripe_client.v1.customers.create(params={"metadata": {"k": "v" * 501}})

    final = stripe_client.v1.invoices.finalize_invoice(inv)
    assert final.status == "open" and final.total == sum(range(250)) and final.number == "DBL-0001"
    assert stripe_client.v1.invoice_items.retrieve(pending.id).invoice is None  # "exclude" is the default
    with pytest.raises(stripe.InvalidRequestError, match="already finalized"):
        stripe_client.v1.invoices.finalize_invoice(inv)
    with pytest.raises(stripe.InvalidRequestError, match="draft invoices"):
        stripe_client.v1.invoice_items.create(params={"customer": cus, "invoice": inv, "amount": 1})
    stripe_double.decline_next_payment()
    with pytest.raises(stripe.CardError):
        stripe_client.v1.invoices.pay(inv)
    assert stripe_client.v1.invoices.pay(inv).status == "paid"

    # "include" pulls the customer's pending items; numbers are unique.
    included = stripe_client.v1.invoices.create(
        params={"customer": cus, "currency": "eur", "pending_invoice_items_behavior": "include", "number": "N-1"}
    )
    assert included.total == 500
    with pytest.raises(stripe.InvalidRequestError, match="already used"):
        stripe_client.v1.invoices.create(params={"customer": cus, "currency": "eur", "number": "N-1"})
    void = stripe_client.v1.invoices.void_invoice(stripe_client.v1.invoices.finalize_invoice(included.id).id)
    assert void.status == "void"
    with pytest.raises(stripe.InvalidRequestError, match="open or paid"):
        stripe_client.v1.credit_notes.create(params={"invoice": void.id, "amount": 1})
    listed = stripe_client.v1.invoices.list(params={"customer": cus, "limit": 1})
    assert [i.id for i in listed.data] == [included.id] and listed.has_more
    page_two = stripe_client.v1.invoices.list(params={"customer": cus, "starting_after": included.id})
    assert [i.id for i in page_two.data] == [inv]


def test_credit_notes(stripe_client: stripe.StripeClient) -> None:
    cus, inv = draft(stripe_client)
    stripe_client.v1.invoice_items.create(params={"customer": cus, "invoice": inv, "amount": 1000})
    stripe_client.v1.invoices.finalize_invoice(inv)
    line: CreditNoteCreateParamsLine = {
        "type": "custom_line_item",
        "description": "c",
        "unit_amount": 400,
        "quantity": 1,
    }
    note = stripe_client.v1.credit_notes.create(params={"invoice": inv, "lines": [line]})
    assert (note.total, note.pre_payment_amount, note.type) == (400, 400, "pre_payment")
    assert stripe_client.v1.invoices.retrieve(inv).amount_remaining == 600
    with pytest.raises(stripe.InvalidRequestError, match="exceeds"):
        stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 601})
    stripe_client.v1.invoices.pay(inv, params={"paid_out_of_band": True})
    with pytest.raises(stripe.InvalidRequestError, match="post-payment"):
        stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 100})
    post = stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 100, "credit_amount": 100})
    assert post.type == "post_payment" and stripe_client.v1.customers.retrieve(cus).balance == -100
    found = stripe_client.v1.credit_notes.list(params={"invoice": inv})
    assert [c.id for c in found.data] == [post.id, note.id]


def test_search_and_expand(stripe_client: stripe.StripeClient) -> None:
    cus = stripe_client.v1.customers.create(params={"metadata": {"gpumeter_tenant": "o'brien"}})
    stripe_client.v1.customers.create(params={"metadata": {"gpumeter_tenant": "other"}})
    hits = stripe_client.v1.customers.search(params={"query": "metadata['gpumeter_tenant']:'o\\'brien'"})
    assert [c.id for c in hits.data] == [cus.id]
    inv = stripe_client.v1.invoices.create(params={"customer": cus.id, "expand": ["customer"]})
    assert not isinstance(inv.customer, str) and inv.customer is not None and inv.customer.id == cus.id
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        stripe_client.v1.invoices.retrieve(inv.id, params={"expand": ["lines.data.nothing"]})


def test_signed_event_delivery_round_trips_through_the_sdk(stripe_double: StripeDouble) -> None:
    """send_event signs as Stripe does: the SDK's own verifier accepts it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    got: list[tuple[bytes, str]] = []

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append((self.rfile.read(int(self.headers["Content-Length"])), self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{sink.server_address[1]}/hook"
        sent = stripe_double.send_event(url, "invoice.paid", {"id": "in_1", "object": "invoice"}, "whsec_test")
    finally:
        sink.shutdown()
        sink.server_close()
    assert sent.status == 200
    body, signature = got[0]
    event = stripe.Webhook.construct_event(body.decode(), signature, "whsec_test")
    assert event.type == "invoice.paid" and event.id == sent.event_id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode(), signature, "whsec_other")
