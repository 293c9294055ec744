"""A legal party to an invoice: the supplier (from ``[billing] supplier``) or a customer.

One record for both sides, so the PDF, the Factur-X XML and the JSON twin read the same
fields whoever the party is. Values are kept as given, but VAT ids and SIRENs are stored
without spaces (``FR 40 303265045`` -> ``FR40303265045``) by whoever builds the party.
A customer's Peppol electronic address comes from tenants.csv; the supplier's from
``[billing] supplier.peppol_id``, which the Peppol XML reads as ``0002:<SIREN>`` when empty
(:func:`billing.ubl.supplier_address`).
"""

from __future__ import annotations

from dataclasses import dataclass

SIREN_SCHEME = "0002"  # ISO 6523 ICD of the French SIREN (legal id and Peppol electronic address)


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
    peppol_id: str = ""  # Peppol electronic address <scheme>:<id> (BT-34 / BT-49 in UBL)
    einvoice: str = "facturx"  # customer only: its e-invoice format, facturx | peppol (metering.einvoice)

    @property
    def legal_info(self) -> str:
        """Seller additional legal information (BT-33): legal form, share capital, RCS."""
        parts = (
            self.legal_form,
            f"share capital {self.share_capital}" if self.share_capital else "",
            f"RCS {self.rcs}" if self.rcs else "",
        )
        return ", ".join(x for x in parts if x)


def compact_id(text: str) -> str:
    """A VAT id or SIREN as stored: no spaces, upper case (``fr 40 3032…`` -> ``FR403032…``)."""
    return text.replace(" ", "").upper()
