"""The Factur-X (CII, profile EN 16931) XML of an issued document, via ``facturx.generate_xml``.

Decisions, each answering a trap of the factur-x 7.8 library:

- money, prices and quantities go in as strings we format ourselves (the library rejects
  ``Decimal`` and would round floats its own way): amounts 2 places, prices as exact as the
  rate card (≤ 6 places), quantities half-up to 4 places (French CTC BR-FR-DEC-02);
- ``check_schematron=False`` and ``check_xsd=False`` here: the library's schematron step
  POSTs to a Saxon server on localhost and silently skips when none answers. Validation is
  :mod:`billing.validate`'s job, offline, and run on every finalized document;
- the billing month is the invoicing period BT-73/BT-74 (the date of supply of Art.
  226(7)), and its last day the actual delivery date BT-72: the supply of a month of GPU
  time is completed then, and without it the library writes an empty, ``xsi:nil``
  delivery block that the XSD rejects;
- BT-23 ``S1`` (services), notes PMD / PMT / AAB (BR-FR-05), and a BAR note (B2B for a
  French customer, B2BINT otherwise) when the supplier is French;
- electronic addresses (BT-34, BT-49) are SIREN-based, scheme ``0225``, when the SIREN is
  known; legal ids (BT-30, BT-47) scheme ``0002``;
- reverse charge: category ``AE``, rate 0, ``VATEX-EU-AE`` with its text, both VAT ids;
  outside scope: category ``O`` with ``VATEX-EU-O``, no rate and — BR-O-02 — no VAT ids in
  the XML (the PDF still prints the supplier's, as French law requires);
- credit notes: type ``381`` with BG-3 (BT-25 number, BT-26 date of the original);
  supplementary invoices: type ``380`` with the same reference;
- contracts (docs/adr/0009-contracts.md): a reservation line is its included GPU-hours at
  its rate; a minimum-spend line is one unit (``C62``) at the shortfall; promotional credits
  are document-level allowances (BG-20: amount, reason "Promotional credit <id>", reason
  code ``95`` discount, the document's VAT category and rate), so the line total BT-106
  less the allowances BT-107 is the tax basis BT-109; prepaid credits are the paid amount
  BT-113, and BT-115 is what is left to pay.
"""

from __future__ import annotations

from typing import Any

from billing.errors import DocumentError
from billing.invoice import ALLOWANCE_DISCOUNT, SEPA_CREDIT_TRANSFER, Invoice, Kind, mentions
from billing.money import HOURS_XML_PLACES, fmt_amount, fmt_decimal, fmt_places
from gpumeter.party import SIREN_SCHEME, Party

LEVEL = "en16931"
BUSINESS_PROCESS = "S1"  # French CTC billing mode: services, plain invoice


def _party(p: Party, *, with_vat_id: bool, customer: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"name": p.legal_name, "country_code": p.country}
    if p.address:
        d["addr_l1"] = p.address
    if p.city:
        d["city"] = p.city
    if p.postcode:
        d["postcode"] = p.postcode
    if with_vat_id and p.vat_id:
        d["vat_identifier"] = p.vat_id
    if p.siren:
        d["legal_identifier"] = p.siren
        d["legal_identifier_schemeid"] = SIREN_SCHEME
        d["einvoicing_addr"] = p.siren
        d["einvoicing_addr_schemeid"] = "0225"
    if not customer and p.legal_info:
        d["legal_info"] = p.legal_info
    if p.email:
        d["contacts"] = [{"email": p.email}]
    return d


def data_dict(inv: Invoice) -> dict[str, Any]:
    """The EN 16931 data (BT/BG keys of factur-x's ``generate_xml``) of an issued document."""
    if inv.number is None or inv.issue_date is None:
        raise DocumentError("only a finalized document has a Factur-X XML", tenant=inv.tenant, period=inv.period.month)
    vat = inv.vat
    notes = [{"BT-21": code, "BT-22": text} for code, text in mentions(inv)]
    if inv.supplier.country == "FR":
        notes.append({"BT-21": "BAR", "BT-22": "B2B" if inv.customer.country == "FR" else "B2BINT"})
    rate = None if vat.stated_rate is None else fmt_places(vat.stated_rate, 2)
    lines = []
    for i, ln in enumerate(inv.lines, start=1):
        line: dict[str, Any] = {
            "BT-126": str(i),
            "BT-129": fmt_places(ln.gpu_hours, HOURS_XML_PLACES),
            "BT-130": ln.unit_code,
            "BT-131": fmt_amount(ln.amount),
            "BT-146": fmt_decimal(ln.unit_price, min_places=2),
            "BT-151": vat.category,
            "BT-153": ln.item_name,
            "BT-154": ln.description,
            "BT-155": ln.item_id,
        }
        if ln.discount_percent:
            line["BT-148"] = fmt_decimal(ln.list_unit_price, min_places=2)
            line["BT-147-00"] = [{"BT-147": fmt_decimal(ln.unit_discount, min_places=2)}]
        if rate is not None:
            line["BT-152"] = rate
        lines.append(line)
    tax: dict[str, Any] = {
        "BT-116": fmt_amount(inv.net),
        "BT-117": fmt_amount(inv.vat_amount),
        "BT-118": vat.category,
    }
    if rate is not None:
        tax["BT-119"] = rate
    if vat.exemption_text:
        tax["BT-120"] = vat.exemption_text
    if vat.exemption_code:
        tax["BT-121"] = vat.exemption_code
    data: dict[str, Any] = {
        "BT-1": inv.number,
        "BT-2": inv.issue_date,
        "BT-3": inv.kind.type_code,
        "BT-5": "EUR",
        "BT-23": BUSINESS_PROCESS,
        "BG-1": notes,
        "BT-72": inv.period.end,
        "BT-73": inv.period.start,
        "BT-74": inv.period.end,
        "BT-10": inv.tenant,
        "BG-4": _party(inv.supplier, with_vat_id=vat.ids_in_xml, customer=False),
        "BG-7": _party(inv.customer, with_vat_id=vat.ids_in_xml, customer=True),
        "BG-23": [tax],
        "BG-25": lines,
        "BT-106": fmt_amount(inv.lines_total),
        "BT-109": fmt_amount(inv.net),
        "BT-110": fmt_amount(inv.vat_amount),
        "BT-112": fmt_amount(inv.total),
        "BT-115": fmt_amount(inv.due),
    }
    data["BT-20"] = inv.payment_terms
    if inv.allowances:
        data["BG-20"] = [
            {
                "amount": fmt_amount(a.amount),
                "reason": a.allowance_reason,
                "reason_code": ALLOWANCE_DISCOUNT,
                "vat_category_code": vat.category,
                **({"vat_rate": rate} if rate is not None else {}),
            }
            for a in inv.allowances
        ]
        data["BT-107"] = fmt_amount(inv.allowance_total)
    if inv.paid:
        data["BT-113"] = fmt_amount(inv.paid_total)
    if inv.kind is Kind.INVOICE and inv.due_date is not None:
        data["BT-9"] = inv.due_date
    if inv.references is not None:
        data["BG-3"] = [{"BT-25": inv.references.number, "BT-26": inv.references.issue_date}]
    if inv.payee_iban is not None:
        data["BT-81"] = SEPA_CREDIT_TRANSFER
        data["BT-84"] = inv.payee_iban
        data["BT-83"] = inv.number
    return data


def build_xml(inv: Invoice) -> bytes:
    """The Factur-X XML bytes (UTF-8). Not validated here: see :mod:`billing.validate`."""
    from facturx import generate_xml

    try:
        xml: bytes = generate_xml(
            data_dict(inv), flavor="factur-x", level=LEVEL, check_xsd=False, check_schematron=False
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise DocumentError(
            f"cannot build the Factur-X XML of {inv.number}: {exc}", tenant=inv.tenant, period=inv.period.month
        ) from exc
    return xml
