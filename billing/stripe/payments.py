"""What Stripe says about a month's documents: the payment status the finance dashboard shows.

``stripe_documents`` holds, per pushed document, Stripe's own status (written by
:mod:`billing.stripe.sync` each time it reads the object) and the payment status of the
latest webhook event (written by :mod:`billing.stripe.webhook`). The query
``sql/queries/stripe_payment_status.sql`` resolves the two into one status.
"""

from __future__ import annotations

import duckdb
import polars as pl

from gpumeter import store
from gpumeter.months import Month


def payment_status(con: duckdb.DuckDBPyConnection, month: Month | str) -> pl.DataFrame:
    """The month's documents in Stripe: ``number, stripe_invoice_id, status, amount, updated_at``.

    ``amount`` is EUR incl. VAT as a Decimal (negative for credit notes); ``status`` is
    paid | payment_failed | open | draft | void | uncollectible | issued (credit notes);
    ``updated_at`` is UTC.
    """
    return store.frame(con, "stripe_payment_status", {"month": str(Month.parse(month))})
