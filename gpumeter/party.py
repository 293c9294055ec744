"""A legal party to an invoice: the supplier (from ``[billing] supplier``) or a customer.

One record for both sides, so the PDF, the Factur-X XML and the JSON twin read the same
fields whoever the party is. Values are kept as given, but VAT ids and SIRENs are stored
without spaces (``FR 40 303265045`` -> ``FR40303265045``) by whoever builds the party.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Party:
    legal_name: str
    country: str  # ISO 3166-1 alpha-2
    vat_id: str = ""
    address: str = ""
    city: str = ""
    postcode: str = ""
    siren: str = ""  # French company number (a French supplier must show it)
    legal_form: str = ""  # supplier only: "SAS", ...
    share_capital: str = ""  # supplier only
    rcs: str = ""  # supplier only: trade register entry
    email: str = ""
    iban: str = ""  # supplier only: where customers pay
    identifier: str = ""  # gpumeter's tenant id, for a customer


def compact_id(text: str) -> str:
    """A VAT id or SIREN as stored: no spaces, upper case (``fr 40 3032…`` -> ``FR403032…``)."""
    return text.replace(" ", "").upper()
