"""A tenant's e-invoice format and Peppol electronic address (``tenants.csv``, pure).

- ``einvoice``: ``facturx`` (the Factur-X PDF every document has) or ``peppol`` (the PDF
  *and* a UBL 2.1 Peppol BIS Billing 3.0 XML). Empty: ``peppol`` for a Belgian tenant
  (Belgian B2B e-invoicing goes through Peppol since 1 January 2026), else ``facturx``.
- ``peppol_id``: ``<scheme>:<id>``, the scheme an ISO 6523 / EAS code from the Peppol
  "Electronic Address Scheme" list (:data:`EAS_SCHEMES`), e.g. ``0208:0123456749``, a
  Belgian enterprise number. A Belgian tenant that gives none but has a VAT id gets
  ``0208:`` + the enterprise number inside that VAT id (BE + the same ten digits), the
  address Belgian companies are registered under in Peppol.

The identifiers the Peppol rules check with a fatal rule (PEPPOL-COMMON-R040 to R050:
GLN, Norwegian, Danish, Belgian, Swedish and Australian numbers) are checked here too, and
French SIREN / SIRET, so a bad address stops the inventory load, not the month's
invoicing. The 0208 check is the rule's own: ten digits, the last two equal to
97 − (the first eight mod 97).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stdnum import ean
from stdnum.au import abn as au_abn
from stdnum.dk import cvr as dk_cvr
from stdnum.fr import siren as fr_siren
from stdnum.fr import siret as fr_siret
from stdnum.no import orgnr as no_orgnr
from stdnum.se import orgnr as se_orgnr

FACTURX = "facturx"
PEPPOL = "peppol"
FORMATS = (FACTURX, PEPPOL)

#: The Peppol Electronic Address Scheme codes the BIS Billing 3.0 rules accept
#: (PEPPOL-EN16931-CL008; release 2025-Q2). tests/billing/test_peppol_rules.py checks this
#: list against the vendored rule file, so the two cannot drift apart.
EAS_SCHEMES = frozenset(
    """
    0002 0007 0009 0037 0060 0088 0096 0097 0106 0130 0135 0142 0147 0151 0154 0158 0170 0177
    0183 0184 0188 0190 0191 0192 0193 0194 0195 0196 0198 0199 0200 0201 0202 0203 0204 0205
    0208 0209 0210 0211 0212 0213 0215 0216 0217 0218 0221 0225 0230 0235 0240 9910 9913 9914
    9915 9918 9919 9920 9922 9923 9924 9925 9926 9927 9928 9929 9930 9931 9932 9933 9934 9935
    9936 9937 9938 9939 9940 9941 9942 9943 9944 9945 9946 9947 9948 9949 9950 9951 9952 9953
    9957 9959
    """.split()  # noqa: SIM905  (the code list laid out as the rule file prints it, easy to compare)
)

_ID = re.compile(r"^[A-Za-z0-9._:/+-]{1,100}$")


def default_format(country: str) -> str:
    return PEPPOL if country == "BE" else FACTURX


def mod97_0208(number: str) -> bool:
    """A Belgian enterprise number as Peppol scheme 0208 wants it (PEPPOL-COMMON-R043)."""
    return bool(re.fullmatch(r"\d{10}", number)) and 97 - int(number[:8]) % 97 == int(number[8:])


def _digits(validate: Callable[[str], object]) -> Callable[[str], bool]:
    """A python-stdnum ``is_valid`` that also insists on plain digits (no spaces, no dots)."""
    return lambda number: number.isdigit() and bool(validate(number))


_CHECKS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "0208": ("a Belgian enterprise number: 10 digits, mod 97 check", mod97_0208),
    "0002": ("a French SIREN: 9 digits", _digits(fr_siren.is_valid)),
    "0009": ("a French SIRET: 14 digits", _digits(fr_siret.is_valid)),
    "0088": ("a GS1 GLN: 13 digits", _digits(ean.is_valid)),
    "0192": ("a Norwegian organisation number: 9 digits", _digits(no_orgnr.is_valid)),
    "0184": ("a Danish CVR number: 8 digits", _digits(dk_cvr.is_valid)),
    "0007": ("a Swedish organisation number: 10 digits", _digits(se_orgnr.is_valid)),
    "0151": ("an Australian ABN: 11 digits", _digits(au_abn.is_valid)),
}


def peppol_id_problem(value: str) -> str | None:
    """None if ``value`` is a usable ``<scheme>:<id>`` Peppol address, else the reason."""
    scheme, sep, number = value.partition(":")
    if not sep or not scheme or not number:
        return "a peppol_id is <scheme>:<id>, e.g. 0208:0123456749"
    if scheme not in EAS_SCHEMES:
        return f"unknown Peppol electronic address scheme {scheme!r} (not in the EAS code list)"
    if not _ID.match(number):
        return "the id part holds characters a Peppol address cannot carry"
    check = _CHECKS.get(scheme)
    if check is not None and not check[1](number):
        return f"scheme {scheme} needs {check[0]}; {number!r} is not one"
    return None


def belgian_peppol_id(vat_id: str) -> str | None:
    """``0208:<enterprise number>`` from a Belgian VAT id (BE + 10 digits), else None."""
    compact = vat_id.replace(" ", "").replace(".", "").upper()
    if not re.fullmatch(r"BE[01]\d{9}", compact) or not mod97_0208(compact[2:]):
        return None
    return f"0208:{compact[2:]}"
