"""A small ISO Schematron to XSLT 3.0 compiler, for the Peppol BIS Billing 3.0 rule files.

The official rules (``billing/rules/peppol/*.sch``) are ISO Schematron with the ``xslt2``
query binding. This module turns one such file into an XSLT 3.0 stylesheet that Saxon
(``saxonche``) runs; the stylesheet writes an SVRL report with one ``svrl:failed-assert``
(or ``svrl:successful-report``) per finding, the way any Schematron processor does.

Only the subset the two rule files use is supported, and anything else is refused, so a
future release of the rules that needs more fails loudly instead of being half-checked:

- ``ns`` (prefix declarations), ``title`` and ``phase`` (ignored: every pattern is active,
  the ``#ALL`` phase), ``p`` (ignored);
- ``let`` at schema and pattern level (global variables evaluated on the document) and at
  rule level (local variables evaluated on the rule's context node);
- ``pattern`` with ``rule context="…"``: within one pattern each node is checked by the
  first rule whose context matches it, in document order, as ISO Schematron says;
- ``assert`` / ``report`` with ``id`` and ``flag`` (the rule's ``flag`` when the assertion has
  none); their message text with ``value-of`` and ``name``;
- ``xsl:function`` at schema level, copied through unchanged.

How: one XSLT mode per pattern; each rule becomes a template of that mode whose priority
falls with the rule's position, so the first matching rule wins; every template (and a
fallback one) then walks on to the node's attributes and child elements.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from billing.errors import ValidationError

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
SVRL = "http://purl.oclc.org/dsdl/svrl"

_IGNORED = {f"{{{SCH}}}title", f"{{{SCH}}}phase", f"{{{SCH}}}p"}
#: Schematron files are a few hundred kB; anything far larger is not one of ours.
MAX_BYTES = 4 * 1024 * 1024


def _local(el: ET.Element) -> str:
    return el.tag.rpartition("}")[2]


def _refuse(what: str, el: ET.Element | None = None) -> ValidationError:
    where = f" <{_local(el)}>" if el is not None else ""
    return ValidationError(f"schematron: unsupported{where}: {what}")


@dataclass(frozen=True)
class _Let:
    name: str
    value: str


def _let(el: ET.Element) -> _Let:
    name, value = el.get("name"), el.get("value")
    if not name or value is None:
        raise _refuse("a let needs a name and a value attribute", el)
    return _Let(name, value)


def _xsl(el: ET.Element) -> str:
    """Serialise an ``xsl:*`` element (a copied function) with the ``xsl`` prefix."""
    if not el.tag.startswith(f"{{{XSL}}}"):
        raise _refuse(f"element {el.tag} inside an xsl:function", el)
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in el.attrib.items() if "}" not in name)
    body = escape(el.text or "") + "".join(_xsl(child) + escape(child.tail or "") for child in el)
    return f"<xsl:{_local(el)}{attrs}>{body}</xsl:{_local(el)}>"


def _message(el: ET.Element) -> str:
    """The XSLT that writes an assertion's text (literal text, value-of, name)."""
    parts = [escape(el.text or "")]
    for child in el:
        name = _local(child) if child.tag.startswith(f"{{{SCH}}}") else ""
        if name == "value-of":
            parts.append(f"<xsl:value-of select={quoteattr(child.get('select', '.'))}/>")
        elif name == "name":
            parts.append(f"<xsl:value-of select={quoteattr('name(' + child.get('path', '.') + ')')}/>")
        elif name in ("emph", "dir", "span"):
            parts.append(escape("".join(child.itertext())))
        else:
            raise _refuse(f"element {child.tag} in an assertion's text", child)
        parts.append(escape(child.tail or ""))
    return "".join(parts)


def _assertion(el: ET.Element, rule_flag: str | None) -> str:
    kind = _local(el)
    test = el.get("test")
    if test is None:
        raise _refuse("an assertion needs a test", el)
    flag = el.get("flag") or rule_flag or "error"
    element = "failed-assert" if kind == "assert" else "successful-report"
    condition = f"not({test})" if kind == "assert" else test
    return (
        f"<xsl:if test={quoteattr(condition)}>"
        f"<svrl:{element} id={quoteattr(el.get('id', ''))} flag={quoteattr(flag)}>"
        '<xsl:attribute name="location" select="path()"/>'
        f"<svrl:text>{_message(el)}</svrl:text>"
        f"</svrl:{element}></xsl:if>"
    )


def _rule(el: ET.Element, mode: str, priority: int) -> str:
    context = el.get("context")
    if not context:
        raise _refuse("a rule needs a context (abstract rules are not supported)", el)
    body: list[str] = []
    for child in el:
        name = _local(child)
        if child.tag == f"{{{SCH}}}let":
            let = _let(child)
            body.append(f"<xsl:variable name={quoteattr(let.name)} select={quoteattr(let.value)}/>")
        elif child.tag in (f"{{{SCH}}}assert", f"{{{SCH}}}report"):
            body.append(_assertion(child, el.get("flag")))
        elif child.tag not in _IGNORED:
            raise _refuse(f"element {name} in a rule", child)
    return (
        f"<xsl:template match={quoteattr(context)} mode={quoteattr(mode)} priority={quoteattr(str(priority))}>"
        + "".join(body)
        + f'<xsl:apply-templates select="@*|*" mode="{mode}"/></xsl:template>'
    )


def _patterns(root: ET.Element) -> Iterator[ET.Element]:
    for child in root:
        if child.tag == f"{{{SCH}}}pattern":
            if child.get("abstract") == "true" or child.get("is-a"):
                raise _refuse("abstract patterns", child)
            yield child


def compile_schematron(source: bytes) -> str:
    """The XSLT 3.0 stylesheet (text) that checks documents against ``source``."""
    if len(source) > MAX_BYTES:
        raise ValidationError(f"schematron: file of {len(source)} bytes is larger than {MAX_BYTES}")
    try:
        root = ET.fromstring(source)  # noqa: S314  (our own vendored rule files, not untrusted input)
    except ET.ParseError as exc:
        raise ValidationError(f"schematron: not well-formed XML: {exc}") from exc
    if root.tag != f"{{{SCH}}}schema":
        raise _refuse(f"root element {root.tag}, expected an ISO Schematron schema")
    if root.get("queryBinding", "xslt2") not in ("xslt2", "xslt3"):
        raise _refuse(f"queryBinding {root.get('queryBinding')!r}")
    namespaces: dict[str, str] = {}
    globals_: list[_Let] = []
    functions: list[str] = []
    for child in root:
        if child.tag == f"{{{SCH}}}ns":
            prefix, uri = child.get("prefix"), child.get("uri")
            if not prefix or uri is None:
                raise _refuse("ns needs a prefix and a uri", child)
            namespaces[prefix] = uri
        elif child.tag == f"{{{SCH}}}let":
            globals_.append(_let(child))
        elif child.tag == f"{{{XSL}}}function":
            functions.append(_xsl(child))
        elif child.tag != f"{{{SCH}}}pattern" and child.tag not in _IGNORED:
            raise _refuse(f"element {child.tag} in the schema", child)
    templates: list[str] = []
    starts: list[str] = []
    for i, pattern in enumerate(_patterns(root), start=1):
        mode = f"p{i}"
        starts.append(f'<xsl:apply-templates select="/" mode="{mode}"/>')
        rules = [r for r in pattern if r.tag == f"{{{SCH}}}rule"]
        for other in pattern:
            if other.tag == f"{{{SCH}}}let":
                globals_.append(_let(other))
            elif other.tag != f"{{{SCH}}}rule" and other.tag not in _IGNORED:
                raise _refuse(f"element {other.tag} in a pattern", other)
        for j, rule in enumerate(rules):
            templates.append(_rule(rule, mode, len(rules) - j))
        templates.append(
            f'<xsl:template match="/|*|@*" mode="{mode}" priority="-1">'
            f'<xsl:apply-templates select="@*|*" mode="{mode}"/></xsl:template>'
        )
    names = [g.name for g in globals_]
    if len(set(names)) != len(names):
        raise _refuse("two global lets share a name")
    decls = "".join(f" xmlns:{p}={quoteattr(u)}" for p, u in sorted(namespaces.items()) if p not in ("xsl", "svrl"))
    variables = "".join(f"<xsl:variable name={quoteattr(g.name)} select={quoteattr(g.value)}/>" for g in globals_)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<xsl:stylesheet version="3.0" xmlns:xsl="{XSL}" xmlns:svrl="{SVRL}"{decls}'
        ' exclude-result-prefixes="#all">'
        '<xsl:output method="xml" encoding="UTF-8"/>'
        + variables
        + "".join(functions)
        + '<xsl:template match="/"><svrl:schematron-output>'
        + "".join(starts)
        + "</svrl:schematron-output></xsl:template>"
        + "".join(templates)
        + "</xsl:stylesheet>"
    )
