"""``gpumeter stripe sync`` and ``gpumeter stripe webhook``.

The only place that reads the Stripe environment:

- ``STRIPE_API_KEY`` — the secret key (never printed or stored);
- ``GPUMETER_STRIPE_API_BASE`` — optional, e.g. ``http://127.0.0.1:PORT``: points the SDK
  at a local Stripe-compatible server through ``base_addresses``;
- ``GPUMETER_STRIPE_WEBHOOK_SECRET`` — the webhook endpoint's signing secret.

The client retries transient failures (connection errors, 409, 5xx) up to
:data:`MAX_NETWORK_RETRIES` times; the sync always passes its own idempotency keys, so a
retry is replayed by Stripe, never executed twice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

import stripe
import typer
from stripe._base_address import BaseAddresses  # the SDK exports the TypedDict only privately

from billing.stripe.sync import sync_month
from billing.stripe.webhook import serve
from gpumeter import store
from gpumeter.commandline import ConfigOpt, MonthOpt, err, fail, get_config, say

MAX_NETWORK_RETRIES = 3

stripe_app = typer.Typer(
    name="stripe",
    help="Push finalized invoices to Stripe; receive its payment events.",
    no_args_is_help=True,
    add_completion=False,
)


def client_from_env(env: Mapping[str, str]) -> stripe.StripeClient:
    """A StripeClient from ``STRIPE_API_KEY`` (and ``GPUMETER_STRIPE_API_BASE``)."""
    key = env.get("STRIPE_API_KEY", "").strip()
    if not key:
        raise fail("STRIPE_API_KEY is not set")
    base = env.get("GPUMETER_STRIPE_API_BASE", "").strip()
    addresses: BaseAddresses = {}
    if base:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise fail(f"GPUMETER_STRIPE_API_BASE must be a URL such as http://127.0.0.1:12111, not {base!r}")
        addresses["api"] = base.rstrip("/")
    return stripe.StripeClient(key, base_addresses=addresses, max_network_retries=MAX_NETWORK_RETRIES)


@stripe_app.command("sync")
def sync(
    month: MonthOpt,
    config: ConfigOpt = None,
) -> None:
    """Push the month's finalized invoices and credit notes to Stripe, idempotently."""
    cfg = get_config(config)
    client = client_from_env(os.environ)
    with store.opened(cfg, "write") as con, err.status(f"pushing {month} to Stripe…"):
        report = sync_month(con, client, month, days_until_due=cfg.billing.payment_terms_days)
    for doc in report.documents:
        typer.echo(f"{doc.number}\t{doc.kind}\t{doc.action}\t{doc.stripe_id}\t{doc.stripe_status}\t{doc.total_cents}")
    say(
        f"{len(report.documents)} documents: {report.count('created')} created, {report.count('resumed')} resumed, "
        f"{report.count('unchanged')} unchanged"
        + (f", {report.count('nothing_due')} with nothing to credit" if report.count("nothing_due") else "")
        + f"; {report.requests} requests to Stripe"
    )


@stripe_app.command("webhook")
def webhook(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8789,
    config: ConfigOpt = None,
) -> None:
    """Serve POST /stripe/webhook: record invoice.paid / invoice.payment_failed."""
    cfg = get_config(config)
    secret = os.environ.get("GPUMETER_STRIPE_WEBHOOK_SECRET", "").strip()
    if not secret:
        raise fail("GPUMETER_STRIPE_WEBHOOK_SECRET is not set")
    with store.opened(cfg, "read"):  # the store exists and its schema is current
        pass
    serve(cfg.store.database, secret, host=host, port=port)
