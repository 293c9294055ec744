"""The issued files: Factur-X XML inside the PDF, valid (XSD, EN 16931, French CTC), and a
PDF that carries every mandatory mention."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from facturx import get_facturx_xml_from_pdf
from lxml import etree
from pypdf import PdfReader

from audit import keys
from billing.run import invoice_month
from billing.validate import check_facturx, check_schematron, verify_facturx
from tests.billing.conftest import H100, Site, at, make_site

M = "2026-10"
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One month issued, then corrected; shared by the read-only tests of this module."""
    site = make_site(tmp_path_factory.mktemp("documents") / "site")
    keys.ensure_key(site.config.audit.signing_key, "a long test passphrase", site.config.audit.origin)
    site.add_example_month()
    invoice_month(site.con, site.config, M, True, now=at(2))
    site.con.execute("DELETE FROM usage WHERE job_id = 'j2'")  # berlin: credit note
    site.add_usage("j1", H100, 3600, window="2026-10-31T23:00:00")  # acme: supplementary invoice
    invoice_month(site.con, site.config, M, True, now=at(20))
    yield site
    site.con.close()


def xml_of(site: Site, number: str) -> bytes:
    name, xml = get_facturx_xml_from_pdf((site.out / M / f"{number}.pdf").read_bytes(), check_xsd=False)
    assert name == "factur-x.xml"
    return bytes(xml)


def text_of(site: Site, number: str) -> str:
    reader = PdfReader(io.BytesIO((site.out / M / f"{number}.pdf").read_bytes()))
    return " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages)


ALL = ["GM-2026-000001", "GM-2026-000002", "GM-2026-000003", "GM-2026-000004", "GMC-2026-000001"]


def test_every_embedded_xml_passes_xsd_and_en16931_with_zero_failed_asserts(issued: Site) -> None:
    for number in ALL:
        xml = xml_of(issued, number)
        report = check_facturx(xml)
        assert report.checks == ("xsd", "en16931") and report.skipped == ()
        assert report.findings == (), [f.line() for f in report.findings]
        assert report.failed_asserts == 0


def test_french_customer_documents_pass_the_french_ctc_rules(issued: Site) -> None:
    for number in ("GM-2026-000001", "GM-2026-000004"):
        xml = xml_of(issued, number)
        assert check_schematron(xml, "fr-ctc") == []
        root = etree.fromstring(xml)
        buyer = root.find(".//ram:BuyerTradeParty", NS)
        assert buyer is not None
        uri = buyer.find("ram:URIUniversalCommunication/ram:URIID", NS)
        assert uri is not None and uri.text == "732829320" and uri.get("schemeID") == "0225"
        assert root.findtext(".//ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID", namespaces=NS) == "S1"
        codes = [n.text for n in root.iterfind(".//rsm:ExchangedDocument/ram:IncludedNote/ram:SubjectCode", NS)]
        assert {"PMT", "PMD", "AAB"} <= set(codes)


def test_validation_catches_a_broken_document(issued: Site) -> None:
    xml = xml_of(issued, "GM-2026-000001").replace(
        b"<ram:LineTotalAmount>30.40</ram:LineTotalAmount>", b"<ram:LineTotalAmount>30.41</ram:LineTotalAmount>", 1
    )
    report = check_facturx(xml)
    assert not report.passed and report.failed_asserts > 0
    assert any(f.rule.startswith("BR-CO-10") for f in report.findings)
    from billing.errors import ValidationError

    with pytest.raises(ValidationError):
        verify_facturx(xml, number="GM-2026-000001")


def test_reverse_charge_xml_carries_ae_both_vat_ids_and_the_exemption(issued: Site) -> None:
    root = etree.fromstring(xml_of(issued, "GM-2026-000002"))
    tax = root.find(".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", NS)
    assert tax is not None
    assert tax.findtext("ram:CategoryCode", namespaces=NS) == "AE"
    assert tax.findtext("ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-AE"
    assert "Art. 196 Directive 2006/112/EC" in (tax.findtext("ram:ExemptionReason", namespaces=NS) or "")
    assert tax.findtext("ram:CalculatedAmount", namespaces=NS) == "0.00"
    ids = [n.text for n in root.iterfind(".//ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA']", NS)]
    assert ids == ["FR40303265045", "DE136695976"]


def test_outside_scope_xml_has_category_o(issued: Site) -> None:
    root = etree.fromstring(xml_of(issued, "GM-2026-000003"))
    assert (
        root.findtext(".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode", namespaces=NS)
        == "O"
    )
    assert root.findtext(".//ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-O"


def test_credit_note_is_type_381_and_cites_the_original_number_and_date(issued: Site) -> None:
    root = etree.fromstring(xml_of(issued, "GMC-2026-000001"))
    assert root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NS) == "381"
    ref = root.find(".//ram:ApplicableHeaderTradeSettlement/ram:InvoiceReferencedDocument", NS)
    assert ref is not None
    assert ref.findtext("ram:IssuerAssignedID", namespaces=NS) == "GM-2026-000002"
    assert ref.findtext("ram:FormattedIssueDateTime/qdt:DateTimeString", namespaces=NS) == "20261102"
    sup = etree.fromstring(xml_of(issued, "GM-2026-000004"))
    assert sup.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NS) == "380"
    assert sup.findtext(".//ram:InvoiceReferencedDocument/ram:IssuerAssignedID", namespaces=NS) == "GM-2026-000001"


def test_billing_period_and_amounts_in_the_xml(issued: Site) -> None:
    root = etree.fromstring(xml_of(issued, "GM-2026-000001"))
    period = root.find(".//ram:ApplicableHeaderTradeSettlement/ram:BillingSpecifiedPeriod", NS)
    assert period is not None
    assert period.findtext("ram:StartDateTime/udt:DateTimeString", namespaces=NS) == "20261001"
    assert period.findtext("ram:EndDateTime/udt:DateTimeString", namespaces=NS) == "20261031"
    summ = root.find(".//ram:SpecifiedTradeSettlementHeaderMonetarySummation", NS)
    assert summ is not None
    assert summ.findtext("ram:TaxBasisTotalAmount", namespaces=NS) == "30.40"
    assert summ.findtext("ram:GrandTotalAmount", namespaces=NS) == "36.48"
    qty = root.find(".//ram:BilledQuantity", NS)
    assert qty is not None and qty.text == "10.8571" and qty.get("unitCode") == "HUR"


SUPPLIER_MENTIONS = [
    "Nuage GPU SAS",
    "12 rue des Serveurs",
    "75011 Paris",
    "SIREN 303265045",
    "SAS",
    "share capital EUR 120 000",
    "RCS Paris B 303 265 045",
    "FR40303265045",
]
COMMON = [
    "Issue date:",
    "Period of supply: 2026-10-01 to 2026-10-31",
    "Nature of operations: services",
    "Due date:",
    "Quantity (GPU-hours)",
    "Unit price EUR excl. VAT",
    "Total excl. VAT",
    "Total incl. VAT",
    "refinancing rate plus 10 percentage points",
    "€40",
    "No discount for early payment",
    "rounded once to the cent (half-up)",
]


def test_pdfs_carry_the_mandatory_mentions(issued: Site) -> None:
    acme = text_of(issued, "GM-2026-000001")
    for m in [
        *SUPPLIER_MENTIONS,
        *COMMON,
        "INVOICE",
        "GM-2026-000001",
        "2026-11-02",
        "2026-12-02",
        "Acme Robotique SA",
        "FR44732829320",
        "NVIDIA H100 80GB HBM3 GPU time",
        "10.857143",
        "2.80",
        "30.40",
        "VAT 20 % on 30.40",
        "6.08",
        "36.48",
    ]:
        assert m in acme, m
    berlin = text_of(issued, "GM-2026-000002")
    for m in ["Autoliquidation", "Reverse charge", "Art. 196 Directive 2006/112/EC", "DE136695976", "FR40303265045"]:
        assert m in berlin, m
    nyc = text_of(issued, "GM-2026-000003")
    assert "outside the scope of EU VAT" in nyc and "Art. 44 Directive 2006/112/EC" in nyc
    cn = text_of(issued, "GMC-2026-000001")
    assert "CREDIT NOTE" in cn and "Credit note for invoice GM-2026-000002 of 2026-11-02" in cn
    sup = text_of(issued, "GM-2026-000004")
    assert "SUPPLEMENTARY INVOICE" in sup and "GM-2026-000001" in sup


def test_draft_pdf_says_it_is_not_an_invoice(site: Site) -> None:
    site.add_job("j1", "acme")
    site.add_usage("j1", H100, 3600)
    invoice_month(site.con, site.config, M, False)
    reader = PdfReader(io.BytesIO((site.out / M / "draft-acme.pdf").read_bytes()))
    text = " ".join((p.extract_text() or "") for p in reader.pages)
    assert "DRAFT" in text and "NOT AN INVOICE" in text
    assert re.search(r"Total incl\. VAT\s+3\.36", text)


def test_every_issued_document_names_the_audit_log_key(issued: Site) -> None:
    """The customer gets the log key's fingerprint from a channel the operator cannot change later."""
    ring = keys.load_keyring(issued.config.audit.signing_key)
    assert ring.current is not None
    fingerprint = ring.current.fingerprint
    vkey = ring.current.verifier(issued.config.audit.origin).vkey
    for number in ALL:
        text = text_of(issued, number).replace(" ", "")
        assert fingerprint in text and vkey in text, number
        notes = etree.fromstring(xml_of(issued, number)).iterfind(".//rsm:ExchangedDocument/ram:IncludedNote", NS)
        pins = [n.findtext("ram:Content", namespaces=NS) or "" for n in notes]
        assert [p for p in pins if fingerprint in p and f"--key {vkey}" in p], number


def test_without_an_audit_key_documents_are_issued_and_the_gap_is_said(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    site.add_job("j1", "acme")
    site.add_usage("j1", H100, 3600)
    said: list[str] = []
    invoice_month(site.con, site.config, M, True, now=at(2), progress=said.append)
    site.con.close()
    assert any(m.startswith("warning: the audit log has no key yet") for m in said)
    assert "SHA256:" not in text_of(site, "GM-2026-000001")
