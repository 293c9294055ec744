"""Billing commands, as a ``typer.Typer`` the app mounts: ``invoice`` and ``stripe …``.

``gpumeter invoice --month YYYY-MM [--finalize]`` is a thin layer over :mod:`billing.run`:
the summary table goes to stdout (one row per document of the month); progress, warnings
and the validation line go to stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import JustifyMethod
from rich.table import Table

from billing.money import fmt_amount
from billing.run import InvoiceResult, invoice_month, validation_summary
from billing.stripe_commands import stripe_app
from gpumeter import store
from gpumeter.commandline import ConfigOpt, MonthOpt, get_config, out, say

commands = typer.Typer(add_completion=False)
commands.add_typer(stripe_app, name="stripe")


@commands.command("invoice")
def invoice(
    month: MonthOpt,
    finalize: Annotated[
        bool,
        typer.Option(
            "--finalize",
            help="Issue the month's documents: gapless numbers, frozen in the store, Factur-X PDFs "
            "(and Peppol UBL XML for tenants with einvoice = peppol). Without it, drafts are (re)written.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """One invoice per tenant with usage, a reservation or a minimum spend (drafts, or issued with --finalize)."""
    cfg = get_config(config)
    with store.opened(cfg, "write") as con:
        results = invoice_month(con, cfg, month, finalize, progress=say)
    out.print(summary_table(results, month))
    if finalize:
        say(validation_summary(results))
    if results:
        say(f"files in {results[0].json_path.parent}")
    else:
        say(f"no billable usage for {month}: nothing to invoice")


def summary_table(results: list[InvoiceResult], month: str) -> Table:
    table = Table(title=f"Invoices {month}", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tenant", "left"),
        ("number", "left"),
        ("kind", "left"),
        ("net", "right"),
        ("VAT", "right"),
        ("total", "right"),
        ("due", "right"),
        ("treatment", "left"),
        ("status", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    for r in results:
        status = r.status if r.created or r.status == "draft" else "issued earlier"
        kind = r.kind + (f" (ref {r.references})" if r.references else "")
        table.add_row(
            r.tenant,
            r.number or "draft",
            kind,
            fmt_amount(r.net),
            fmt_amount(r.vat),
            fmt_amount(r.total),
            fmt_amount(r.due),
            r.vat_treatment,
            status,
        )
    return table
