"""The parties of a document: the supplier's mandatory mentions, a tenant as the customer (pure).

:func:`check_supplier` lists what ``[billing] supplier`` lacks for issuing (France asks for
more than the EU baseline, Art. 226 Directive 2006/112/EC and CGI ann. II art. 242 nonies A);
:func:`verify_supplier` raises :class:`~billing.errors.SupplierError` for gates.
"""

from __future__ import annotations

from billing.errors import SupplierError
from gpumeter.party import Party
from metering.inventory import Tenant, validate_vat_id

_FR_REQUIRED = ("address", "postcode", "city", "siren", "legal_form", "share_capital", "rcs")
_REQUIRED = ("address", "postcode", "city")


def check_supplier(p: Party) -> list[str]:
    """Names of the [billing] supplier keys an issued invoice needs but lacks (or holds badly)."""
    from stdnum.fr import siren as fr_siren

    problems = []
    for key in _FR_REQUIRED if p.country == "FR" else _REQUIRED:
        if not str(getattr(p, key)).strip():
            problems.append(f"{key} is empty")
    if not p.vat_id:
        problems.append("vat_id is empty")
    elif validate_vat_id(p.vat_id, p.country):
        problems.append(f"vat_id {p.vat_id!r} is not a valid VAT id of {p.country}")
    if p.siren and not fr_siren.is_valid(p.siren):
        problems.append(f"siren {p.siren!r} is not a valid SIREN")
    return problems


def verify_supplier(p: Party, *, file: str | None = None) -> None:
    problems = check_supplier(p)
    if problems:
        raise SupplierError(
            "[billing] supplier cannot issue invoices: " + "; ".join(problems),
            file=file,
            value=None,
        )


def customer_party(tenant: Tenant) -> Party:
    """A tenant of tenants.csv as the customer of its invoices."""
    return Party(
        legal_name=tenant.legal_name,
        country=tenant.country,
        vat_id=tenant.vat_id,
        address=tenant.address or "",
        email=tenant.email or "",
        siren=customer_siren(tenant.country, tenant.vat_id),
        identifier=tenant.tenant,
        peppol_id=tenant.peppol_id or "",
        einvoice=tenant.einvoice,
    )


def customer_siren(country: str, vat_id: str) -> str:
    """A French customer's SIREN, from its VAT id (FRkk + SIREN); else ''."""
    if country != "FR" or not vat_id:
        return ""
    from stdnum.exceptions import ValidationError as StdnumError
    from stdnum.fr import tva

    try:
        return str(tva.to_siren(vat_id))
    except StdnumError:
        return ""
