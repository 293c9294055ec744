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
import re
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

import stripe
import typer
from stripe._base_address import BaseAddresses  # the SDK exports the TypedDict only privately

from billing import stripe_sync, stripe_webhook
from gpumeter import store
from gpumeter.cli import ConfigOpt, app, err, fail, get_config

MAX_NETWORK_RETRIES = 3

stripe_app = typer.Typer(
    name="stripe",
    help="Push finalized invoices to Stripe; receive its payment events.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(stripe_app, name="stripe")


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
    month: Annotated[str, typer.Option("--month", help="Calendar month (UTC), YYYY-MM.")],
    config: ConfigOpt = None,
) -> None:
    """Push the month's finalized invoices and credit notes to Stripe, idempotently."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise typer.BadParameter("must be YYYY-MM", param_hint="--month")
    cfg = get_config(config)
    client = client_from_env(os.environ)
    con = store.connect(cfg.store.database)
    try:
        with err.status(f"pushing {month} to Stripe…"):
            report = stripe_sync.sync_month(
                con,
                client,
                month,
                invoices_dir=cfg.billing.output,
                days_until_due=cfg.billing.payment_terms_days,
            )
    finally:
        con.close()
    for doc in report.documents:
        typer.echo(f"{doc.number}\t{doc.kind}\t{doc.action}\t{doc.stripe_id}\t{doc.stripe_status}\t{doc.total_cents}")
    err.print(
        f"{len(report.documents)} documents: {report.count('created')} created, {report.count('resumed')} resumed, "
        f"{report.count('unchanged')} unchanged; {report.requests} requests to Stripe",
        highlight=False,
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
    con = store.connect(cfg.store.database)
    try:
        store.require_schema(con)
    finally:
        con.close()
    stripe_webhook.serve(cfg.store.database, secret, host=host, port=port)
