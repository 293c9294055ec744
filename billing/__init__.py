"""billing: GPU usage priced into EU invoices (Factur-X), credit notes and FOCUS rows.

Pure core (no I/O, no clock):

- :mod:`billing.money` — Decimal money, the one rounding mode, exact rationals;
- :mod:`billing.rates` — rates.toml -> :class:`~billing.rates.RateCard` (MIG N/S, profiles
  and sites priced apart, graduated tiers, tenant discounts, spot rates);
- :mod:`billing.contracts` — contracts.toml -> reservations, minimum spends, credits;
- :mod:`billing.reservations`, :mod:`billing.credits` — what reservations include and draw,
  what documents draw from, give back to and write off credits (balances from the documents);
- :mod:`billing.vat` — domestic / reverse charge / outside scope, EU standard rates;
- :mod:`billing.invoice` — lines, totals, credits on a document, corrections, the JSON twin;
- :mod:`billing.plan` — the month's pending documents; :mod:`billing.parties` — supplier
  mentions and the customer;
- :mod:`billing.facturx_xml`, :mod:`billing.pdf` — the EN 16931 XML and the PDF;
- :mod:`billing.validate` — XSD + schematron checks (``check_facturx`` / ``verify_facturx``);
- :mod:`billing.budgets` — monthly budgets, which thresholds a net reaches, the alert event.

I/O edge: :mod:`billing.run` (``month_plan(con, config, period)``,
``invoice_month(con, config, month, finalize)``), :mod:`billing.drawdown` (the hourly
reservation drawdown in DuckDB),
:mod:`billing.numbering` (gapless series in the store), :mod:`billing.focus`
(``focus_frame(con, config, month)``, ``write_focus``), :mod:`billing.stripe` (issued
documents pushed to Stripe, payment webhooks), :mod:`billing.alerts` (budget alerts decided
once in an outbox), :mod:`billing.alert_delivery` (``[alerts]``, signed webhooks, retries);
:mod:`billing.commands`, :mod:`billing.stripe_commands` and :mod:`billing.budget_commands` (CLI).
Errors: :mod:`billing.errors` (``BillingError`` and its tree). Decisions:
docs/adr/0005-money-and-rounding.md, docs/adr/0009-contracts.md.
"""
