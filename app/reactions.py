"""What follows metering, whichever command metered: one function for ``collect`` and ``serve``.

:func:`after_metering` is called with the store open for writing, once the usage of a span
is committed (after ``gpumeter collect``, and by ``gpumeter serve`` after each metered hour):

1. the audit log records new inventory versions and the (re)metered windows
   (:func:`audit.record.after_collect`);
2. budget alerts (:func:`billing.alerts.after_metering`): the months the span touches are
   priced for every budgeted tenant, newly reached thresholds are decided once, and every
   pending alert is delivered to ``[alerts] webhook_url``, signed with the secret in
   ``GPUMETER_WEBHOOK_SECRET`` (read here: only the app reads the environment).

Notices go to stderr through :func:`gpumeter.commandline.say`.
"""

from __future__ import annotations

import os

import duckdb

from audit import record
from billing import alert_delivery, alerts
from gpumeter.commandline import say
from gpumeter.config import Config
from gpumeter.months import Month
from metering.run import CollectReport
from metering.windows import Span, from_ms


def months_of(span: Span | None) -> list[Month]:
    """The calendar months (UTC) that ``span`` touches, in order; none without a span."""
    if span is None:
        return []
    first, last = Month.of(from_ms(span.start_ms)), Month.of(from_ms(span.end_ms - 1))
    return list(first.until(last.next()))


def after_metering(con: duckdb.DuckDBPyConnection, cfg: Config, report: CollectReport) -> None:
    """Everything that follows a committed span of usage (``report.span``); see the module docstring."""
    record.after_collect(con, cfg)
    alerts.after_metering(con, cfg, months_of(report.span), secret=os.environ.get(alert_delivery.SECRET_ENV), say=say)
