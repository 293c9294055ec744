"""Peppol BIS Billing 3.0: ``<number>.xml`` (UBL 2.1) for tenants with ``einvoice = peppol``,
issued by ``gpumeter invoice --finalize`` on a real store, valid against the UBL XSD and both
official rule sets, carrying the same numbers as its Factur-X twin to the cent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from facturx import get_facturx_xml_from_pdf
from lxml import etree

from billing.errors import SupplierError, ValidationError
from billing.run import invoice_month
from billing.ubl import NS
from billing.validate import check_ubl
from tests.billing.conftest import A30, A100, H100, RATES, Site, at, make_site
from tests.billing.test_cli import run

M = "2026-10"
UBL = {prefix: NS[prefix] for prefix in ("cac", "cbc")}
CII = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}


def peppol_tenants(site: Site) -> None:
    """A domestic French tenant choosing Peppol (S), a Belgian one (AE), a Swiss one (O)."""
    site.con.execute("UPDATE tenants SET einvoice = 'peppol', peppol_id = '0002:732829320' WHERE tenant = 'acme'")
    belgian_and_swiss_tenants(site)


def belgian_and_swiss_tenants(site: Site) -> None:
    """``bruxelles`` (BE, reverse charge) and ``zurich`` (CH, outside scope), both on Peppol."""
    site.add_tenant(
        "bruxelles",
        "Bruxelles Data SRL",
        "BE",
        "BE0403170701",
        "Rue de la Loi 1, 1000 Bruxelles",
        einvoice="peppol",
        peppol_id="0208:0403170701",
    )
    site.add_tenant(
        "zurich",
        "Alpen Quant AG",
        "CH",
        "CHE-113.690.319 MWST",
        "Bahnhofstrasse 1, 8001 Zürich",
        einvoice="peppol",
        peppol_id="0183:CHE113690319",
    )


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """October issued for five tenants (three on Peppol), then corrected: a credit note for
    the Belgian tenant, a supplementary invoice for the French one."""
    site = make_site(tmp_path_factory.mktemp("peppol") / "site")
    site.write_rates(RATES + '[[discount]]\ntenant = "zurich"\npercent = "12.5"\n')
    peppol_tenants(site)
    for job, tenant in (("j1", "acme"), ("j2", "bruxelles"), ("j3", "zurich"), ("j4", "berlin"), ("j5", "nyc")):
        site.add_job(job, tenant)
    site.add_usage("j1", H100, 36000)
    site.add_usage("j1", H100, 7200, profile="3g.40gb")
    site.add_usage("j2", A100, "5447.2")
    site.add_usage("j2", H100, 3600)
    site.add_usage("j3", A30, 7200, profile="1g.6gb")
    site.add_usage("j3", H100, "1000.5")
    site.add_usage("j4", A100, 3600)
    site.add_usage("j5", A30, 3600)
    invoice_month(site.con, site.config, M, True, now=at(2))
    site.con.execute("DELETE FROM usage WHERE job_id = 'j2' AND gpu_model = ?", [H100])  # bruxelles: credit note
    site.add_usage("j1", H100, 3600, window="2026-10-31T23:00:00")  # acme: supplementary invoice
    invoice_month(site.con, site.config, M, True, now=at(20))
    yield site
    site.con.close()


def numbers(site: Site) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for number, tenant in site.con.execute("SELECT number, tenant FROM billing_documents ORDER BY number").fetchall():
        out.setdefault(tenant, []).append(number)
    return out


# tenants in order: acme 1 (and 6, supplementary), berlin 2, bruxelles 3 (credit note GMC 1), nyc 4, zurich 5
PEPPOL_DOCS = ["GM-2026-000001", "GM-2026-000003", "GM-2026-000005", "GM-2026-000006", "GMC-2026-000001"]


def test_peppol_tenants_get_an_xml_beside_json_and_pdf_the_others_do_not(issued: Site) -> None:
    assert numbers(issued) == {
        "acme": ["GM-2026-000001", "GM-2026-000006"],
        "berlin": ["GM-2026-000002"],
        "bruxelles": ["GM-2026-000003", "GMC-2026-000001"],
        "nyc": ["GM-2026-000004"],
        "zurich": ["GM-2026-000005"],
    }
    xmls = sorted(p.stem for p in (issued.out / M).glob("*.xml"))
    assert xmls == sorted(PEPPOL_DOCS)
    for number in PEPPOL_DOCS:
        assert json.loads((issued.out / M / f"{number}.json").read_text(encoding="utf-8"))["einvoice"] == "peppol"
    for number in ("GM-2026-000002", "GM-2026-000004"):
        assert json.loads((issued.out / M / f"{number}.json").read_text(encoding="utf-8"))["einvoice"] == "facturx"


@pytest.mark.parametrize("number", PEPPOL_DOCS)
def test_every_peppol_document_passes_xsd_cen_and_peppol_rules_with_zero_findings(issued: Site, number: str) -> None:
    report = check_ubl((issued.out / M / f"{number}.xml").read_bytes())
    assert report.checks == ("xsd", "cen-ubl", "peppol")
    assert report.findings == (), [f.line() for f in report.findings]  # not even a warning
    assert report.passed


def _d(el: Any, path: str, ns: dict[str, str]) -> Decimal:
    text = el.findtext(path, namespaces=ns)
    assert text is not None, path
    return Decimal(text)


def _opt_d(el: Any, path: str, ns: dict[str, str]) -> Decimal | None:
    text = el.findtext(path, namespaces=ns)
    return None if text is None else Decimal(text)


def _cii_date(el: Any, path: str) -> str | None:
    text = el.findtext(path, namespaces=CII)
    return None if text is None else date(int(text[:4]), int(text[4:6]), int(text[6:8])).isoformat()


def cii_facts(xml: bytes) -> dict[str, Any]:
    root = etree.fromstring(xml)
    doc = root.find("rsm:ExchangedDocument", CII)
    trade = root.find("rsm:SupplyChainTradeTransaction", CII)
    settle = trade.find("ram:ApplicableHeaderTradeSettlement", CII)
    tax = settle.find("ram:ApplicableTradeTax", CII)
    sums = settle.find("ram:SpecifiedTradeSettlementHeaderMonetarySummation", CII)
    agreement = trade.find("ram:ApplicableHeaderTradeAgreement", CII)
    lines = []
    for item in trade.iterfind("ram:IncludedSupplyChainTradeLineItem", CII):
        qty = item.find("ram:SpecifiedLineTradeDelivery/ram:BilledQuantity", CII)
        rate = item.findtext(
            "ram:SpecifiedLineTradeSettlement/ram:ApplicableTradeTax/ram:RateApplicablePercent", None, CII
        )
        gross = item.findtext(
            "ram:SpecifiedLineTradeAgreement/ram:GrossPriceProductTradePrice/ram:ChargeAmount", None, CII
        )
        lines.append(
            (
                Decimal(qty.text),
                qty.get("unitCode"),
                _d(
                    item,
                    "ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount",
                    CII,
                ),
                _d(item, "ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice/ram:ChargeAmount", CII),
                None if gross is None else Decimal(gross),
                item.findtext("ram:SpecifiedLineTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode", None, CII),
                None if rate is None else Decimal(rate),
                item.findtext("ram:SpecifiedTradeProduct/ram:Name", None, CII),
                item.findtext("ram:SpecifiedTradeProduct/ram:SellerAssignedID", None, CII),
            )
        )
    rate = tax.findtext("ram:RateApplicablePercent", None, CII)
    allowances = [
        (
            _d(a, "ram:ActualAmount", CII),
            a.findtext("ram:ReasonCode", None, CII),
            a.findtext("ram:Reason", None, CII),
            a.findtext("ram:CategoryTradeTax/ram:CategoryCode", None, CII),
            _opt_d(a, "ram:CategoryTradeTax/ram:RateApplicablePercent", CII),
        )
        for a in settle.iterfind("ram:SpecifiedTradeAllowanceCharge", CII)
        if a.findtext("ram:ChargeIndicator/udt:Indicator", None, CII) == "false"
    ]
    return {
        "allowances": allowances,
        "allowance_total": _opt_d(sums, "ram:AllowanceTotalAmount", CII),
        "prepaid": _opt_d(sums, "ram:TotalPrepaidAmount", CII),
        "number": doc.findtext("ram:ID", None, CII),
        "type": doc.findtext("ram:TypeCode", None, CII),
        "issue_date": _cii_date(doc, "ram:IssueDateTime/udt:DateTimeString"),
        "due_date": _cii_date(settle, "ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString"),
        "currency": settle.findtext("ram:InvoiceCurrencyCode", None, CII),
        "buyer_reference": agreement.findtext("ram:BuyerReference", None, CII),
        "seller_vat": agreement.findtext("ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID", None, CII),
        "buyer_vat": agreement.findtext("ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID", None, CII),
        "period": (
            _cii_date(settle, "ram:BillingSpecifiedPeriod/ram:StartDateTime/udt:DateTimeString"),
            _cii_date(settle, "ram:BillingSpecifiedPeriod/ram:EndDateTime/udt:DateTimeString"),
        ),
        "references": (
            settle.findtext("ram:InvoiceReferencedDocument/ram:IssuerAssignedID", None, CII),
            _cii_date(settle, "ram:InvoiceReferencedDocument/ram:FormattedIssueDateTime/qdt:DateTimeString"),
        ),
        "tax": (
            _d(tax, "ram:BasisAmount", CII),
            _d(tax, "ram:CalculatedAmount", CII),
            tax.findtext("ram:CategoryCode", None, CII),
            None if rate is None else Decimal(rate),
            tax.findtext("ram:ExemptionReasonCode", None, CII),
            tax.findtext("ram:ExemptionReason", None, CII),
        ),
        "totals": tuple(
            _d(sums, f"ram:{n}", CII)
            for n in (
                "LineTotalAmount",
                "TaxBasisTotalAmount",
                "TaxTotalAmount",
                "GrandTotalAmount",
                "DuePayableAmount",
            )
        ),
        "lines": lines,
        "payment_terms": settle.findtext("ram:SpecifiedTradePaymentTerms/ram:Description", None, CII),
        "iban": settle.findtext(
            "ram:SpecifiedTradeSettlementPaymentMeans/ram:PayeePartyCreditorFinancialAccount/ram:IBANID", None, CII
        ),
    }


def ubl_facts(xml: bytes) -> dict[str, Any]:
    root = etree.fromstring(xml)
    credit = etree.QName(root).localname == "CreditNote"
    sub = root.find("cac:TaxTotal/cac:TaxSubtotal", UBL)
    cat = sub.find("cac:TaxCategory", UBL)
    totals = root.find("cac:LegalMonetaryTotal", UBL)
    lines = []
    for ln in root.iterfind("cac:CreditNoteLine" if credit else "cac:InvoiceLine", UBL):
        qty = ln.find("cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity", UBL)
        rate = ln.findtext("cac:Item/cac:ClassifiedTaxCategory/cbc:Percent", None, UBL)
        gross = ln.findtext("cac:Price/cac:AllowanceCharge/cbc:BaseAmount", None, UBL)
        lines.append(
            (
                Decimal(qty.text),
                qty.get("unitCode"),
                _d(ln, "cbc:LineExtensionAmount", UBL),
                _d(ln, "cac:Price/cbc:PriceAmount", UBL),
                None if gross is None else Decimal(gross),
                ln.findtext("cac:Item/cac:ClassifiedTaxCategory/cbc:ID", None, UBL),
                None if rate is None else Decimal(rate),
                ln.findtext("cac:Item/cbc:Name", None, UBL),
                ln.findtext("cac:Item/cac:SellersItemIdentification/cbc:ID", None, UBL),
            )
        )
    rate = cat.findtext("cbc:Percent", None, UBL)
    allowances = [
        (
            _d(a, "cbc:Amount", UBL),
            a.findtext("cbc:AllowanceChargeReasonCode", None, UBL),
            a.findtext("cbc:AllowanceChargeReason", None, UBL),
            a.findtext("cac:TaxCategory/cbc:ID", None, UBL),
            _opt_d(a, "cac:TaxCategory/cbc:Percent", UBL),
        )
        for a in root.iterfind("cac:AllowanceCharge", UBL)
        if a.findtext("cbc:ChargeIndicator", None, UBL) == "false"
    ]
    return {
        "allowances": allowances,
        "allowance_total": _opt_d(totals, "cbc:AllowanceTotalAmount", UBL),
        "prepaid": _opt_d(totals, "cbc:PrepaidAmount", UBL),
        "number": root.findtext("cbc:ID", None, UBL),
        "type": root.findtext("cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode", None, UBL),
        "issue_date": root.findtext("cbc:IssueDate", None, UBL),
        "due_date": root.findtext("cbc:DueDate", None, UBL),
        "currency": root.findtext("cbc:DocumentCurrencyCode", None, UBL),
        "buyer_reference": root.findtext("cbc:BuyerReference", None, UBL),
        "seller_vat": root.findtext(
            "cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID", None, UBL
        ),
        "buyer_vat": root.findtext("cac:AccountingCustomerParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID", None, UBL),
        "period": (
            root.findtext("cac:InvoicePeriod/cbc:StartDate", None, UBL),
            root.findtext("cac:InvoicePeriod/cbc:EndDate", None, UBL),
        ),
        "references": (
            root.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", None, UBL),
            root.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:IssueDate", None, UBL),
        ),
        "tax": (
            _d(sub, "cbc:TaxableAmount", UBL),
            _d(sub, "cbc:TaxAmount", UBL),
            cat.findtext("cbc:ID", None, UBL),
            None if rate is None else Decimal(rate),
            cat.findtext("cbc:TaxExemptionReasonCode", None, UBL),
            cat.findtext("cbc:TaxExemptionReason", None, UBL),
        ),
        "totals": (
            _d(totals, "cbc:LineExtensionAmount", UBL),
            _d(totals, "cbc:TaxExclusiveAmount", UBL),
            _d(root, "cac:TaxTotal/cbc:TaxAmount", UBL),
            _d(totals, "cbc:TaxInclusiveAmount", UBL),
            _d(totals, "cbc:PayableAmount", UBL),
        ),
        "lines": lines,
        "payment_terms": root.findtext("cac:PaymentTerms/cbc:Note", None, UBL),
        "iban": root.findtext("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", None, UBL),
    }


def facturx_xml(site: Site, number: str) -> bytes:
    _, xml = get_facturx_xml_from_pdf((site.out / M / f"{number}.pdf").read_bytes(), check_xsd=False)
    return bytes(xml)


@pytest.mark.parametrize("number", PEPPOL_DOCS)
def test_the_ubl_carries_the_same_numbers_as_its_factur_x_twin(issued: Site, number: str) -> None:
    ubl = ubl_facts((issued.out / M / f"{number}.xml").read_bytes())
    cii = cii_facts(facturx_xml(issued, number))
    assert ubl == cii
    twin = json.loads((issued.out / M / f"{number}.json").read_text(encoding="utf-8"))
    assert [str(x) for x in ubl["totals"][1:4]] == [twin["net"], twin["vat"], twin["total"]]
    assert [str(ln[2]) for ln in ubl["lines"]] == [ln["amount"] for ln in twin["lines"]]


def test_vat_categories_exemptions_and_parties(issued: Site) -> None:
    acme, bxl, zurich = (ubl_facts((issued.out / M / f"{n}.xml").read_bytes()) for n in PEPPOL_DOCS[:3])
    assert acme["tax"][2:] == ("S", Decimal("20.00"), None, None) and acme["buyer_vat"] == "FR44732829320"
    assert bxl["tax"][1:5] == (Decimal("0.00"), "AE", Decimal("0.00"), "VATEX-EU-AE")
    assert "Reverse charge" in bxl["tax"][5] and bxl["buyer_vat"] == "BE0403170701"
    assert zurich["tax"][2:5] == ("O", None, "VATEX-EU-O")
    assert zurich["seller_vat"] is None and zurich["buyer_vat"] is None  # BR-O-02
    # the tenant's 12.5 % discount is a price allowance: gross 2.80, net 2.45 per GPU-hour
    assert [(ln[3], ln[4]) for ln in zurich["lines"]] == [
        (Decimal("1.05"), Decimal("1.20")),
        (Decimal("2.45"), Decimal("2.80")),
    ]
    root = etree.fromstring((issued.out / M / "GM-2026-000003.xml").read_bytes())
    ends = [
        (e.get("schemeID"), e.text)
        for e in root.iterfind("cac:*/cac:Party/cbc:EndpointID", UBL)  # seller, then buyer
    ]
    assert ends == [("0002", "303265045"), ("0208", "0403170701")]
    assert len(root.findall("cbc:Note", UBL)) == 1  # PEPPOL-EN16931-R002


def test_credit_note_is_a_ubl_credit_note_citing_the_original(issued: Site) -> None:
    root = etree.fromstring((issued.out / M / "GMC-2026-000001.xml").read_bytes())
    assert etree.QName(root).localname == "CreditNote"
    assert root.findtext("cbc:CreditNoteTypeCode", None, UBL) == "381"
    assert root.find("cbc:DueDate", UBL) is None and root.find("cac:PaymentMeans", UBL) is None
    facts = ubl_facts(etree.tostring(root))
    assert facts["references"] == ("GM-2026-000003", "2026-11-02")
    assert facts["lines"][0][2] == Decimal("2.80") and facts["lines"][0][0] == Decimal("1.0000")


def test_the_audit_log_vouches_for_the_xml(issued: Site) -> None:
    rows = issued.con.execute(
        "SELECT subject, entry FROM audit_entries WHERE entry_type = 'invoice_finalized' ORDER BY idx"
    ).fetchall()
    logged = {s: json.loads(bytes(e)) for s, e in rows}
    for number in PEPPOL_DOCS:
        sha = hashlib.sha256((issued.out / M / f"{number}.xml").read_bytes()).hexdigest()
        assert logged[number]["ubl"] == {"document": f"documents/{number}.xml", "sha256": sha}
        stored = issued.con.execute(
            "SELECT ubl_sha256 FROM billing_ubl_documents WHERE number = ?", [number]
        ).fetchall()
        assert stored == [(sha,)]
    assert "ubl" not in logged["GM-2026-000002"]
    kept = issued.con.execute("SELECT name FROM audit_documents WHERE name LIKE '%.xml' ORDER BY name").fetchall()
    assert [p for (p,) in kept] == sorted(f"documents/{n}.xml" for n in PEPPOL_DOCS)


def test_re_running_finalize_never_re_issues_and_restores_a_deleted_xml(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    peppol_tenants(site)
    site.add_job("j2", "bruxelles")
    site.add_usage("j2", A100, 3600)
    invoice_month(site.con, site.config, M, True, now=at(2))
    xml = site.out / M / "GM-2026-000001.xml"
    first = xml.read_bytes()
    xml.unlink()
    again = invoice_month(site.con, site.config, M, True, now=at(3))
    assert [(r.number, r.created, r.ubl_path) for r in again] == [("GM-2026-000001", False, xml)]
    assert xml.read_bytes() == first  # byte for byte, from the store
    assert site.con.execute("SELECT count(*) FROM billing_ubl_documents").fetchall() == [(1,)]
    site.con.close()


def test_switching_format_after_issue_keeps_issued_documents_and_applies_to_the_next(tmp_path: Path) -> None:
    """The documented rule: a document keeps the format it was issued in; corrections and
    later months follow the tenant's current format. Nothing is re-issued, nothing lost."""
    site = make_site(tmp_path / "site")
    site.add_job("j2", "berlin")
    site.add_usage("j2", A100, 7200)
    invoice_month(site.con, site.config, M, True, now=at(2))  # berlin: Factur-X only
    site.con.execute("UPDATE tenants SET einvoice = 'peppol', peppol_id = '9930:DE136695976' WHERE tenant = 'berlin'")
    rerun = invoice_month(site.con, site.config, M, True, now=at(3))
    assert [(r.number, r.created, r.ubl_path) for r in rerun] == [("GM-2026-000001", False, None)]
    assert not list((site.out / M).glob("*.xml"))
    site.con.execute("DELETE FROM usage")
    site.add_usage("j2", A100, 3600)  # a correction of the Factur-X invoice: a Peppol credit note
    fixed = invoice_month(site.con, site.config, M, True, now=at(4))
    assert [(r.number, r.ubl_path is not None) for r in fixed] == [("GM-2026-000001", False), ("GMC-2026-000001", True)]
    cn = ubl_facts((site.out / M / "GMC-2026-000001.xml").read_bytes())
    assert cn["references"] == ("GM-2026-000001", "2026-11-02") and cn["totals"][3] == Decimal("1.90")
    # and back to Factur-X: the issued XML stays (restored if deleted), new documents get none
    site.con.execute("UPDATE tenants SET einvoice = 'facturx', peppol_id = NULL WHERE tenant = 'berlin'")
    (site.out / M / "GMC-2026-000001.xml").unlink()
    site.add_usage("j2", A100, 1800)
    back = invoice_month(site.con, site.config, M, True, now=at(5))
    assert [(r.number, r.ubl_path is not None) for r in back] == [
        ("GM-2026-000001", False),
        ("GM-2026-000002", False),
        ("GMC-2026-000001", True),
    ]
    assert sorted(p.name for p in (site.out / M).glob("*.xml")) == ["GMC-2026-000001.xml"]
    totals = site.con.execute("SELECT number, total FROM billing_documents ORDER BY number").fetchall()
    assert totals == [
        ("GM-2026-000001", Decimal("3.80")),
        ("GM-2026-000002", Decimal("0.95")),
        ("GMC-2026-000001", Decimal("1.90")),
    ]  # 3.80 - 1.90 + 0.95 = the 1.5 GPU-hours now metered: billed once
    site.con.close()


def test_a_fatal_rule_stops_the_finalize_before_anything_is_frozen(tmp_path: Path) -> None:
    """A Peppol address that slipped past tenants.csv (written straight into the store)
    fails PEPPOL-COMMON-R043: no number claimed, no document, no file, no log entry."""
    site = make_site(tmp_path / "site")
    site.add_tenant(
        "bad", "Bad Check SRL", "BE", "BE0403170701", "Rue 1", einvoice="peppol", peppol_id="0208:0403170702"
    )
    site.add_job("j1", "acme")
    site.add_job("j2", "bad")
    site.add_usage("j1", H100, 3600)
    site.add_usage("j2", A100, 3600)
    with pytest.raises(ValidationError) as info:
        invoice_month(site.con, site.config, M, True, now=at(2))
    assert "PEPPOL-COMMON-R043" in info.value.message and "GM-2026-000002" in info.value.message
    assert site.con.execute("SELECT count(*) FROM billing_documents").fetchall() == [(0,)]
    assert site.con.execute("SELECT count(*) FROM billing_sequences").fetchall() == [(0,)]
    assert site.con.execute("SELECT count(*) FROM audit_entries").fetchall() == [(0,)]
    assert not (site.out / M).exists() or not any((site.out / M).glob("GM-*"))
    site.con.close()


def test_a_supplier_without_an_electronic_address_cannot_issue_peppol(tmp_path: Path) -> None:
    """A French supplier's address defaults to 0002:<SIREN>; a Belgian one, with no SIREN,
    needs ``[billing] supplier.peppol_id`` before it can issue a Peppol document."""
    from gpumeter.config import load_config

    site = make_site(tmp_path / "site")
    toml = site.root / "gpumeter.toml"
    text = toml.read_text(encoding="utf-8")
    for key in ("siren", "legal_form", "share_capital", "rcs"):
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"{key} ="))
    text = text.replace('country = "FR"', 'country = "BE"').replace("FR40303265045", "BE0403170701")
    toml.write_text(text + "\n", encoding="utf-8")
    site.config = load_config(toml)
    peppol_tenants(site)
    site.add_job("j2", "bruxelles")  # a domestic Belgian invoice now: S at 21 %
    site.add_usage("j2", A100, 3600)
    with pytest.raises(SupplierError, match="peppol_id") as info:
        invoice_month(site.con, site.config, M, True, now=at(2))
    assert info.value.file is not None and info.value.file.endswith("gpumeter.toml")
    assert site.con.execute("SELECT count(*) FROM billing_documents").fetchall() == [(0,)]
    toml.write_text(text + '\npeppol_id = "0208:0403170701"\n', encoding="utf-8")  # still in [billing.supplier]
    site.config = load_config(toml)
    (r,) = invoice_month(site.con, site.config, M, True, now=at(2))
    assert r.ubl_path is not None and check_ubl(r.ubl_path.read_bytes()).findings == ()
    seller = etree.fromstring(r.ubl_path.read_bytes()).find("cac:AccountingSupplierParty/cac:Party/cbc:EndpointID", UBL)
    assert (seller.get("schemeID"), seller.text) == ("0208", "0403170701")
    site.con.close()


def test_cli_finalize_writes_the_xml_and_a_fatal_rule_is_one_error_line(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    peppol_tenants(site)
    site.add_tenant(
        "bad", "Bad Check SRL", "BE", "BE0403170701", "Rue 1", einvoice="peppol", peppol_id="0208:0403170702"
    )
    site.add_job("j2", "bruxelles")
    site.add_job("j9", "bad")
    site.add_usage("j2", A100, 3600)
    site.add_usage("j9", A100, 3600)
    site.con.close()
    p = run("invoice", "--month", M, "--finalize", "--config", "gpumeter.toml", cwd=site.root)
    assert p.returncode == 1
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "PEPPOL-COMMON-R043" in err[0] and "GM-2026-000001" in err[0], p.stderr
    assert not (site.out / M).exists() or not any((site.out / M).iterdir())
    con = duckdb.connect(str(site.config.store.database))
    con.execute("DELETE FROM tenants WHERE tenant = 'bad'")
    con.execute("DELETE FROM jobs WHERE job_id = 'j9'")
    con.close()
    p = run("invoice", "--month", M, "--finalize", "--config", "gpumeter.toml", cwd=site.root)
    assert p.returncode == 0, p.stderr
    assert "1 Peppol UBL XML(s) passed UBL XSD + CEN EN 16931 + Peppol BIS 3.0 rules" in p.stderr
    assert check_ubl((site.out / M / "GM-2026-000001.xml").read_bytes()).findings == ()
