"""``gpumeter invoice --month YYYY-MM [--finalize]``: a thin layer over :mod:`billing.run`.

The summary table goes to stdout (one row per document of the month); progress, warnings
and the validation line go to stderr. Importing this module also registers the other
billing commands (``gpumeter stripe …``) when their module is present.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer
from rich.console import Console, JustifyMethod
from rich.table import Table

from billing.money import fmt_amount
from billing.run import InvoiceResult, invoice_month, validation_summary
from gpumeter import store
from gpumeter.cli import ConfigOpt, app, err, get_config

# Data on stdout: never truncated to an 80-column guess when piped or captured.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@app.command("invoice")
def invoice(
    month: Annotated[str, typer.Option("--month", help="Calendar month in UTC, YYYY-MM.")],
    finalize: Annotated[
        bool,
        typer.Option(
            "--finalize",
            help="Issue the month's documents: gapless numbers, frozen in the store, Factur-X PDFs. "
            "Without it, drafts are (re)written.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """One invoice per tenant with usage in the month (drafts, or issued with --finalize)."""
    cfg = get_config(config)
    con = store.connect(cfg.store.database)
    try:
        results = invoice_month(
            con, cfg, month, finalize, progress=lambda msg: err.print(msg, highlight=False, markup=False)
        )
    finally:
        con.close()
    out.print(summary_table(results, month))
    if finalize:
        err.print(validation_summary(results), highlight=False, markup=False)
    if results:
        err.print(f"files in {results[0].json_path.parent}", highlight=False, markup=False, soft_wrap=True)
    else:
        err.print(f"no billable usage for {month}: nothing to invoice", highlight=False, markup=False)


def summary_table(results: list[InvoiceResult], month: str) -> Table:
    table = Table(title=f"Invoices {month}", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tenant", "left"),
        ("number", "left"),
        ("kind", "left"),
        ("net", "right"),
        ("VAT", "right"),
        ("total", "right"),
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
            r.vat_treatment,
            status,
        )
    return table


try:  # the Stripe adapter's commands live in billing too
    importlib.import_module("billing.stripe_commands")
except ModuleNotFoundError as exc:
    if exc.name != "billing.stripe_commands":
        raise
