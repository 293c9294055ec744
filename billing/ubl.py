"""The UBL 2.1 XML (Peppol BIS Billing 3.0) of an issued document, for tenants with
``einvoice = peppol``: an ``Invoice`` (type 380) or a ``CreditNote`` (type 381).

Built from the same :class:`~billing.invoice.Invoice` as the Factur-X XML
(:mod:`billing.facturx_xml`): every amount, rate, VAT category, exemption, name and date
comes from the model, formatted the same way, so the two carry the same numbers. What
differs is only what the Peppol rules ask for (billing/rules/peppol/README.md):

- the specification and business process ids (``CustomizationID``, ``ProfileID``);
- one note at most (PEPPOL-EN16931-R002): the document's mentions, one per line;
- a buyer reference (R003): gpumeter's tenant id, the Factur-X BT-10 too;
- electronic addresses for seller and buyer (``EndpointID``): the tenant's ``peppol_id``
  and the supplier's (``[billing] supplier.peppol_id``, else ``0002:<SIREN>``:
  :func:`supplier_address`);
- no empty element anywhere (R008): optional values are left out, never written empty;
- a credit note has no ``DueDate`` (the XSD has none) and cites the original invoice in
  ``cac:BillingReference``, like a supplementary invoice does;
- quantities with :data:`~billing.money.HOURS_XML_PLACES` decimals, like Factur-X: line
  quantity × price stays within R120's ±0.02 of the line amount;
- a tenant discount is a price-level allowance (gross price, discount, net price: R046);
- contracts (docs/adr/0009-contracts.md), as in the Factur-X XML: reservation lines are their
  included GPU-hours, a minimum-spend true-up one unit (``C62``); promotional credits are
  document-level allowances (``cac:AllowanceCharge``, reason code ``95``, the document's VAT
  category), so ``LineExtensionAmount`` (BT-106) less ``AllowanceTotalAmount`` (BT-107) is
  ``TaxExclusiveAmount`` (BT-109); prepaid credits are ``PrepaidAmount`` (BT-113) and
  ``PayableAmount`` (BT-115) what is left to pay.

Not validated here: :func:`billing.validate.verify_ubl` does it (XSD, CEN EN 16931, Peppol).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

from billing.errors import DocumentError, SupplierError
from billing.invoice import ALLOWANCE_DISCOUNT, SEPA_CREDIT_TRANSFER, Invoice, Kind, Line, mentions
from billing.money import CURRENCY, HOURS_XML_PLACES, fmt_amount, fmt_decimal, fmt_places
from gpumeter.party import SIREN_SCHEME, Party

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
NS = {
    "invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "creditnote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}


def supplier_address(p: Party) -> str:
    """The supplier's Peppol electronic address: ``peppol_id``, else ``0002:<SIREN>`` (a French
    company is registered in Peppol under its SIREN), else ``""``."""
    return p.peppol_id or (f"{SIREN_SCHEME}:{p.siren}" if p.siren else "")


def verify_peppol_supplier(p: Party, *, file: str | None = None) -> None:
    """The supplier's electronic address, needed only to issue Peppol documents."""
    from metering.einvoice import peppol_id_problem

    address = supplier_address(p)
    reason = peppol_id_problem(address) if address else "it has neither peppol_id nor siren"
    if reason:
        raise SupplierError(
            f"[billing] supplier cannot issue Peppol e-invoices: no valid electronic address ({reason})",
            file=file,
            value=address or None,
        )


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _opt(parent: ET.Element, tag: str, text: str | None, **attrs: str) -> None:
    """An element only when it has a value (PEPPOL-EN16931-R008: no empty elements)."""
    if text is not None and text.strip():
        _add(parent, tag, text, **attrs)


def _money(parent: ET.Element, tag: str, amount: Decimal) -> None:
    _add(parent, tag, fmt_amount(amount), currencyID=CURRENCY)


def _rate(rate: Decimal | None) -> str | None:
    return None if rate is None else fmt_places(rate, 2)


def endpoint(p: Party, *, role: str, inv: Invoice) -> tuple[str, str]:
    """(scheme, id) of a party's Peppol electronic address; refused when there is none."""
    address = supplier_address(p) if role == "supplier" else p.peppol_id
    scheme, sep, number = address.partition(":")
    if not sep or not scheme or not number:
        raise DocumentError(
            f"cannot build the Peppol XML of {inv.number}: the {role} has no Peppol electronic address (peppol_id)",
            tenant=inv.tenant,
            period=inv.period.month,
            value=address or None,
        )
    return scheme, number


def _party(parent: ET.Element, p: Party, *, role: str, inv: Invoice) -> None:
    party = _add(parent, "cac:Party")
    scheme, number = endpoint(p, role=role, inv=inv)
    _add(party, "cbc:EndpointID", number, schemeID=scheme)
    address = _add(party, "cac:PostalAddress")
    _opt(address, "cbc:StreetName", p.address)
    _opt(address, "cbc:CityName", p.city)
    _opt(address, "cbc:PostalZone", p.postcode)
    _add(_add(address, "cac:Country"), "cbc:IdentificationCode", p.country)
    if inv.vat.ids_in_xml and p.vat_id:
        tax = _add(party, "cac:PartyTaxScheme")
        _add(tax, "cbc:CompanyID", p.vat_id)
        _add(_add(tax, "cac:TaxScheme"), "cbc:ID", "VAT")
    legal = _add(party, "cac:PartyLegalEntity")
    _add(legal, "cbc:RegistrationName", p.legal_name)
    if p.siren:
        _add(legal, "cbc:CompanyID", p.siren, schemeID=SIREN_SCHEME)
    if not p.identifier:  # the supplier: its legal form, capital and registry (BT-33)
        _opt(legal, "cbc:CompanyLegalForm", p.legal_info)
    if p.email:
        _add(_add(party, "cac:Contact"), "cbc:ElectronicMail", p.email)


def _tax_category(parent: ET.Element, tag: str, inv: Invoice, *, with_exemption: bool) -> None:
    vat = inv.vat
    cat = _add(parent, tag)
    _add(cat, "cbc:ID", vat.category)
    _opt(cat, "cbc:Percent", _rate(vat.stated_rate))
    if with_exemption:
        _opt(cat, "cbc:TaxExemptionReasonCode", vat.exemption_code)
        _opt(cat, "cbc:TaxExemptionReason", vat.exemption_text)
    _add(_add(cat, "cac:TaxScheme"), "cbc:ID", "VAT")


def _line(parent: ET.Element, i: int, ln: Line, inv: Invoice) -> None:
    credit = inv.kind is Kind.CREDIT_NOTE
    line = _add(parent, "cac:CreditNoteLine" if credit else "cac:InvoiceLine")
    _add(line, "cbc:ID", str(i))
    _add(
        line,
        "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity",
        fmt_places(ln.gpu_hours, HOURS_XML_PLACES),
        unitCode=ln.unit_code,
    )
    _money(line, "cbc:LineExtensionAmount", ln.amount)
    item = _add(line, "cac:Item")
    _opt(item, "cbc:Description", ln.description)
    _add(item, "cbc:Name", ln.item_name)
    _add(_add(item, "cac:SellersItemIdentification"), "cbc:ID", ln.item_id)
    _tax_category(item, "cac:ClassifiedTaxCategory", inv, with_exemption=False)
    price = _add(line, "cac:Price")
    _add(price, "cbc:PriceAmount", fmt_decimal(ln.unit_price, min_places=2), currencyID=CURRENCY)
    if ln.discount_percent:
        allowance = _add(price, "cac:AllowanceCharge")
        _add(allowance, "cbc:ChargeIndicator", "false")
        _add(allowance, "cbc:Amount", fmt_decimal(ln.unit_discount, min_places=2), currencyID=CURRENCY)
        _add(allowance, "cbc:BaseAmount", fmt_decimal(ln.list_unit_price, min_places=2), currencyID=CURRENCY)


def _iso(d: date) -> str:
    return d.isoformat()


def build_ubl(inv: Invoice) -> bytes:
    """The UBL 2.1 XML bytes (UTF-8) of an issued document."""
    if inv.number is None or inv.issue_date is None:
        raise DocumentError("only a finalized document has a Peppol XML", tenant=inv.tenant, period=inv.period.month)
    credit = inv.kind is Kind.CREDIT_NOTE
    root = ET.Element(
        "CreditNote" if credit else "Invoice",
        {
            "xmlns": NS["creditnote" if credit else "invoice"],
            "xmlns:cac": NS["cac"],
            "xmlns:cbc": NS["cbc"],
        },
    )
    _add(root, "cbc:CustomizationID", CUSTOMIZATION_ID)
    _add(root, "cbc:ProfileID", PROFILE_ID)
    _add(root, "cbc:ID", inv.number)
    _add(root, "cbc:IssueDate", _iso(inv.issue_date))
    if not credit and inv.due_date is not None:
        _add(root, "cbc:DueDate", _iso(inv.due_date))
    _add(root, "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode", inv.kind.type_code)
    _add(root, "cbc:Note", "\n".join(text for _, text in mentions(inv)))
    _add(root, "cbc:DocumentCurrencyCode", CURRENCY)
    _add(root, "cbc:BuyerReference", inv.tenant)
    period = _add(root, "cac:InvoicePeriod")
    _add(period, "cbc:StartDate", _iso(inv.period.start))
    _add(period, "cbc:EndDate", _iso(inv.period.end))
    if inv.references is not None:
        ref = _add(_add(root, "cac:BillingReference"), "cac:InvoiceDocumentReference")
        _add(ref, "cbc:ID", inv.references.number)
        _add(ref, "cbc:IssueDate", _iso(inv.references.issue_date))
    _party(_add(root, "cac:AccountingSupplierParty"), inv.supplier, role="supplier", inv=inv)
    _party(_add(root, "cac:AccountingCustomerParty"), inv.customer, role="customer", inv=inv)
    _add(_add(root, "cac:Delivery"), "cbc:ActualDeliveryDate", _iso(inv.period.end))
    if inv.payee_iban is not None:
        means = _add(root, "cac:PaymentMeans")
        _add(means, "cbc:PaymentMeansCode", SEPA_CREDIT_TRANSFER)
        _add(means, "cbc:PaymentID", inv.number)
        _add(_add(means, "cac:PayeeFinancialAccount"), "cbc:ID", inv.payee_iban)
    _add(_add(root, "cac:PaymentTerms"), "cbc:Note", inv.payment_terms)
    for a in inv.allowances:  # promotional credits: document-level allowances (BG-20)
        allowance = _add(root, "cac:AllowanceCharge")
        _add(allowance, "cbc:ChargeIndicator", "false")
        _add(allowance, "cbc:AllowanceChargeReasonCode", ALLOWANCE_DISCOUNT)
        _add(allowance, "cbc:AllowanceChargeReason", a.allowance_reason)
        _money(allowance, "cbc:Amount", a.amount)
        _tax_category(allowance, "cac:TaxCategory", inv, with_exemption=False)
    tax_total = _add(root, "cac:TaxTotal")
    _money(tax_total, "cbc:TaxAmount", inv.vat_amount)
    subtotal = _add(tax_total, "cac:TaxSubtotal")
    _money(subtotal, "cbc:TaxableAmount", inv.net)
    _money(subtotal, "cbc:TaxAmount", inv.vat_amount)
    _tax_category(subtotal, "cac:TaxCategory", inv, with_exemption=True)
    totals = _add(root, "cac:LegalMonetaryTotal")
    _money(totals, "cbc:LineExtensionAmount", inv.lines_total)
    _money(totals, "cbc:TaxExclusiveAmount", inv.net)
    _money(totals, "cbc:TaxInclusiveAmount", inv.total)
    if inv.allowances:
        _money(totals, "cbc:AllowanceTotalAmount", inv.allowance_total)
    if inv.paid:
        _money(totals, "cbc:PrepaidAmount", inv.paid_total)
    _money(totals, "cbc:PayableAmount", inv.due)
    for i, ln in enumerate(inv.lines, start=1):
        _line(root, i, ln, inv)
    ET.indent(root)
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out
