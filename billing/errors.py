"""Billing errors: one tree, caught once by the CLI.

::

    GpumeterError (gpumeter.errors)
    └── BillingError               billing could not produce a correct document
        ├── RatesError             rates.toml is unreadable or holds a bad value
        │                          (file, line of the [[rate]]/[[discount]], key, value)
        ├── ContractsError         contracts.toml is unreadable or holds a bad value
        │                          (file, line of the key, value)
        ├── PricingError           usage that cannot be priced (model, MIG profile, job)
        ├── VatError               a tenant's VAT status does not allow invoicing (tenant)
        ├── SupplierError          [billing] supplier lacks a mandatory invoice mention
        ├── StoreStateError        issued documents in the store disagree with themselves
        ├── ClosingError           the month cannot be issued now: not over, not fully
        │                          metered, or the clock is behind the last issue date
        ├── DocumentError          an e-invoice could not be built or failed validation
        │   └── ValidationError    Factur-X XML fails the XSD or a schematron
        └── StripeSyncError        an issued document cannot be pushed to Stripe (number)
            ├── StripeRequestError     Stripe refused or did not answer (wraps stripe.StripeError)
            └── StripeTotalMismatch    Stripe's total differs from the legal document's

Every error carries the structured fields of :class:`gpumeter.errors.GpumeterError`
(``file``, ``line``, ``value``) plus, where they apply, ``tenant``, ``model``, ``job`` and
``period``. Nothing is stored when one is raised: invoicing computes every document before
it opens the finalization transaction. The Stripe errors also carry ``number`` (the gpumeter
document); a Stripe sync checks and plans every document before its first request, so an
error raised before then means nothing was sent.
"""

from __future__ import annotations

from pathlib import Path

from gpumeter.errors import GpumeterError


class BillingError(GpumeterError):
    """Billing could not produce a correct invoice; nothing was issued."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        value: object = None,
        tenant: str | None = None,
        model: str | None = None,
        job: str | None = None,
        period: str | None = None,
    ) -> None:
        super().__init__(message, file=file, line=line, value=value)
        self.tenant = tenant
        self.model = model
        self.job = job
        self.period = period


class RatesError(BillingError):
    """rates.toml is unreadable or holds a bad value."""


class ContractsError(BillingError):
    """contracts.toml is unreadable, or a reservation, minimum spend or credit in it is bad."""


class PricingError(BillingError):
    """Usage that no rate prices (never billed at zero)."""


class VatError(BillingError):
    """A tenant's VAT status does not allow an invoice (e.g. EU tenant without a valid VAT id)."""


class SupplierError(BillingError):
    """The supplier block of gpumeter.toml lacks a mention the law requires on an invoice."""


class StoreStateError(BillingError):
    """Issued documents in the store are inconsistent (e.g. a credit note with no original)."""


class ClosingError(BillingError):
    """``--finalize`` refused: the month has not ended, some of its hours were never
    collected, or the issue date is earlier than the last issued document's."""


class DocumentError(BillingError):
    """The PDF or the Factur-X XML could not be produced."""


class ValidationError(DocumentError):
    """A Factur-X XML fails the XSD or a schematron; ``findings`` lists the failed asserts."""

    def __init__(
        self,
        message: str,
        *,
        findings: tuple[str, ...] = (),
        value: object = None,
        tenant: str | None = None,
        period: str | None = None,
    ) -> None:
        super().__init__(message, value=value, tenant=tenant, period=period)
        self.findings = findings


class StripeSyncError(BillingError):
    """An issued document cannot be pushed to Stripe; ``number`` names it."""

    def __init__(
        self, message: str, *, number: str | None = None, file: str | Path | None = None, value: object = None
    ) -> None:
        super().__init__(message if number is None else f"{number}: {message}", file=file, value=value)
        self.number = number


class StripeRequestError(StripeSyncError):
    """Stripe refused a request, or could not be reached (after the SDK's retries)."""


class StripeTotalMismatch(StripeSyncError):
    """Stripe's total for a document is not the legal document's total."""
