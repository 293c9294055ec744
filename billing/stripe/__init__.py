"""Stripe collects what gpumeter invoices: issued documents pushed idempotently, payments back.

gpumeter's Factur-X document is the legal invoice; Stripe only collects the money
(billing-eu.md §1). So Stripe must show the *same* amounts, never recompute them (the
rules are in :mod:`billing.stripe.plan`). Data boundary: only amounts, invoice numbers,
tenant ids and GPU model / hours / price leave the EU store; customers carry metadata
``gpumeter_tenant`` alone (no name, e-mail or address); job ids and hosts are never read.

Modules, from pure to I/O:

- :mod:`~billing.stripe.documents` — the month's issued invoices and credit notes, checked
  (:class:`~billing.stripe.documents.Document`, amounts in integer cents);
- :mod:`~billing.stripe.plan` — pure: what each document becomes in Stripe (items,
  metadata, texts) and the idempotency key of every request;
- :mod:`~billing.stripe.session` — the I/O with ``stripe.StripeClient``: each request is
  sent, written to ``stripe_requests`` and its step to ``stripe_steps``, atomically;
- :mod:`~billing.stripe.sync` — orchestration: ``sync_month(con, client, month)``, resuming
  after a crash without duplicating anything, and the ``stripe_sync`` audit entries;
- :mod:`~billing.stripe.payments` — what Stripe says about the month's documents
  (``payment_status``, for the finance dashboard);
- :mod:`~billing.stripe.webhook` — the ``POST /stripe/webhook`` server recording
  ``invoice.paid`` / ``invoice.payment_failed``.

Errors: :class:`billing.errors.StripeSyncError` and its subclasses (see :mod:`billing.errors`).
Only the CLI (:mod:`billing.stripe_commands`) reads the Stripe environment.
"""
