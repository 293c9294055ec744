"""The human-readable invoice: a PDF with every mandatory mention, and its Factur-X twin.

Mentions (Directive 2006/112/EC Art. 226, CGI ann. II art. 242 nonies A,
Code de commerce L441-9/L441-10/D441-5): supplier name, address, SIREN, legal form, share
capital, RCS, VAT ids of both parties, customer name and address, issue date, number,
period (date) of supply, nature of the operation (services), description, quantity, unit
price excl. VAT, discount, VAT rate and amount, totals excl. and incl. VAT, due date,
late-payment penalty rate, the €40 recovery indemnity, early-payment discount (none),
"Autoliquidation" / "Reverse charge" with Art. 196, the exemption reference, the reference
to the original invoice on a credit note or supplement, and the rounding rule. With
contracts: each reservation's included, used and excess GPU-hours, promotional credits as
allowances before VAT, prepaid credits as amounts paid, the amount due, expired credits.

Rendering is reportlab with the Bitstream Vera fonts reportlab ships (embedded, so the
file does not depend on the reader's fonts, as PDF/A-3 asks), ``invariant`` mode (no
timestamp or random id in the body) and an sRGB output intent. :func:`facturx_pdf` then
embeds the XML with ``facturx.generate_from_binary`` (level EN 16931), which adds the
``factur-x.xml`` attachment (AFRelationship ``Data``) and the PDF/A-3 XMP metadata.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

from billing.errors import DocumentError
from billing.invoice import Invoice, Kind, LineKind, mentions
from billing.money import HOURS_DISPLAY_PLACES, fmt_amount, fmt_decimal, fmt_places
from gpumeter.party import Party

FONT = "GpumeterVera"
FONT_BOLD = "GpumeterVeraBd"


@cache
def _fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(FONT, "Vera.ttf"))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, "VeraBd.ttf"))


@cache
def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _party_lines(p: Party, *, supplier: bool) -> list[str]:
    out = [f"<b>{_esc(p.legal_name)}</b>"]
    if p.address:
        out.append(_esc(p.address))
    place = " ".join(x for x in (p.postcode, p.city) if x)
    out.append(_esc(f"{place}, {p.country}" if place else p.country))
    if supplier:
        legal = ", ".join(x for x in (p.legal_form, f"share capital {p.share_capital}" if p.share_capital else "") if x)
        if legal:
            out.append(_esc(legal))
        if p.siren:
            out.append(f"SIREN {_esc(p.siren)}" + (f" — RCS {_esc(p.rcs)}" if p.rcs else ""))
        elif p.rcs:
            out.append(f"RCS {_esc(p.rcs)}")
    elif p.siren:
        out.append(f"SIREN {_esc(p.siren)}")
    out.append(f"VAT id: {_esc(p.vat_id)}" if p.vat_id else "VAT id: none")
    if p.email:
        out.append(_esc(p.email))
    if p.identifier:
        out.append(f"Tenant: {_esc(p.identifier)}")
    return out


def _title(inv: Invoice) -> str:
    if inv.kind is Kind.CREDIT_NOTE:
        return "CREDIT NOTE"
    return "SUPPLEMENTARY INVOICE" if inv.references is not None else "INVOICE"


@dataclass(frozen=True)
class _Styles:
    base: Any
    small: Any
    title: Any
    bold: Any
    right: Any


def _styles() -> _Styles:
    from reportlab.lib.styles import ParagraphStyle

    _fonts()
    base = ParagraphStyle("base", fontName=FONT, fontSize=8.5, leading=11)
    return _Styles(
        base=base,
        small=ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5),
        title=ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=15, leading=19),
        bold=ParagraphStyle("bold", parent=base, fontName=FONT_BOLD),
        right=ParagraphStyle("right", parent=base, alignment=2),
    )


def _two_columns(left: Any, right: Any) -> Any:
    from reportlab.lib.units import mm
    from reportlab.platypus import Table, TableStyle

    table = Table([[left, right]], colWidths=[95 * mm, 83 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def _header(inv: Invoice, st: _Styles) -> list[Any]:
    """The supplier with its legal mentions, and what the document is, with its number."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    kind = "DRAFT — NOT AN INVOICE" if inv.number is None else _title(inv)
    number = f"<font size=10>No. {_esc(inv.number or '(assigned at finalization)')}</font>"
    supplier = Paragraph("<br/>".join(_party_lines(inv.supplier, supplier=True)), st.base)
    return [_two_columns(supplier, Paragraph(f"{kind}<br/>{number}", st.title)), Spacer(1, 5 * mm)]


def _parties(inv: Invoice, st: _Styles) -> list[Any]:
    """Dates, period and nature of supply (with the original on a correction), and the customer."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    facts = [
        f"Issue date: {inv.issue_date.isoformat() if inv.issue_date else '(at finalization)'}",
        f"Period of supply: {inv.period.start.isoformat()} to {inv.period.end.isoformat()} "
        f"(calendar month {inv.period.month}, UTC)",
        "Nature of operations: services (GPU compute time)",
        f"Due date: {inv.due_date.isoformat() if inv.due_date else f'{inv.payment_terms_days} days after issue'}",
        "Currency: EUR",
    ]
    if inv.references is not None:
        what = "Credit note for" if inv.kind is Kind.CREDIT_NOTE else "Supplementary invoice to"
        facts.append(f"<b>{what} invoice {_esc(inv.references.number)} of {inv.references.issue_date.isoformat()}</b>")
    customer = Paragraph("Customer<br/>" + "<br/>".join(_party_lines(inv.customer, supplier=False)), st.base)
    return [_two_columns(Paragraph("<br/>".join(facts), st.base), customer), Spacer(1, 5 * mm)]


def _lines_table(inv: Invoice, st: _Styles) -> list[Any]:
    """One row per line: description, quantity, unit price (list price and discount), VAT, amount."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

    rate_txt = f"{fmt_decimal(inv.vat.rate_percent)} %" if inv.vat.category != "O" else "n/a"
    heads = ("#", "Description", "Quantity (GPU-hours)", "Unit price EUR excl. VAT", "VAT", "Amount EUR excl. VAT")
    rows: list[list[Any]] = [[Paragraph(h, st.bold) for h in heads]]
    for i, ln in enumerate(inv.lines, start=1):
        price = fmt_decimal(ln.unit_price, min_places=2)
        if ln.discount_percent:
            price += (
                f"<br/><font size=7>list {fmt_decimal(ln.list_unit_price, min_places=2)}, "
                f"discount {fmt_decimal(ln.discount_percent)} %</font>"
            )
        quantity = fmt_places(ln.gpu_hours, HOURS_DISPLAY_PLACES) if ln.in_gpu_hours else "1 (true-up)"
        rows.append(
            [
                Paragraph(str(i), st.base),
                Paragraph(_esc(ln.description), st.small),
                Paragraph(quantity, st.right),
                Paragraph(price, st.right),
                Paragraph(rate_txt, st.right),
                Paragraph(fmt_amount(ln.amount), st.right),
            ]
        )
    table = Table(rows, colWidths=[7 * mm, 70 * mm, 28 * mm, 28 * mm, 15 * mm, 30 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.grey),
            ]
        )
    )
    return [table, Spacer(1, 4 * mm), *_reserved(inv, st)]


def _reserved(inv: Invoice, st: _Styles) -> list[Any]:
    """Each reservation's included, used and excess GPU-hours (excess: billed on the usage lines)."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    rows = []
    for ln in inv.lines:
        if ln.kind is not LineKind.RESERVATION or ln.used_gpu_hours is None:
            continue
        excess = sum(
            (x.gpu_hours for x in inv.lines if x.kind is LineKind.USAGE and x.gpu_model == ln.gpu_model),
            Fraction(0),
        )
        where = _esc(ln.gpu_model) + (f", site {_esc(ln.site)}" if ln.site else "")
        rows.append(
            f"Reservation {_esc(ln.contract or '')} ({where}): "
            f"{fmt_places(ln.gpu_hours, 2)} GPU-hours included, {fmt_places(ln.used_gpu_hours, 2)} used; "
            f"{_esc(ln.gpu_model)} usage beyond reservations (excess, on the usage lines): {fmt_places(excess, 2)} "
            "GPU-hours or instance-hours."
        )
    if not rows:
        return []
    return [Paragraph("<br/>".join(rows), st.small), Spacer(1, 4 * mm)]


def _totals(inv: Invoice, st: _Styles) -> list[Any]:
    """Net, VAT (rate and base, reverse charge, or outside scope), total, amount due or credited."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

    vat_label = {
        "S": f"VAT {fmt_decimal(inv.vat.rate_percent)} % on {fmt_amount(inv.net)}",
        "AE": "VAT 0 % — reverse charge (Autoliquidation)",
        "O": "VAT — not applicable (outside the scope of EU VAT)",
    }[inv.vat.category]
    back = inv.kind is Kind.CREDIT_NOTE

    def row(label: str, amount: str) -> list[Any]:
        return [Paragraph(label, st.base), Paragraph(amount, st.right)]

    rows = []
    if inv.allowances:
        rows.append(row("Lines total excl. VAT", fmt_amount(inv.lines_total)))
        for a in inv.allowances:
            what = "given back to" if back else "less"
            rows.append(row(f"{what} promotional credit {_esc(a.credit)}", f"-{fmt_amount(a.amount)}"))
    rows += [
        row("Total excl. VAT (net)", fmt_amount(inv.net)),
        row(_esc(vat_label), fmt_amount(inv.vat_amount)),
        row("<b>Total incl. VAT</b>", f"<b>{fmt_amount(inv.total)}</b>"),
    ]
    bold_at = len(rows) - 1
    for p in inv.paid:
        what = "given back to prepaid credit" if back else "paid in advance, prepaid credit"
        rows.append(row(f"{what} {_esc(p.credit)}", f"-{fmt_amount(p.amount)}"))
    rows.append(row("Amount to be credited" if back else "Amount due", f"EUR {fmt_amount(inv.due)}"))
    for e in inv.credits_expired:
        rows.append(row(f"credit {_esc(e.credit)} expired unused", f"({fmt_amount(e.amount)})"))
    totals = Table(rows, colWidths=[70 * mm, 30 * mm], hAlign="RIGHT")
    totals.setStyle(TableStyle([("LINEABOVE", (0, bold_at), (-1, bold_at), 0.6, colors.black)]))
    return [totals, Spacer(1, 5 * mm)]


def _mentions(inv: Invoice, st: _Styles) -> list[Any]:
    """The mandatory mentions: VAT regime, payment, late-payment terms, notes, what the file is."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    out: list[Any] = []
    if inv.vat.category == "AE":
        out.append(
            Paragraph(
                f"<b>Autoliquidation. Reverse charge — Art. 196 Directive 2006/112/EC.</b> VAT is due by the "
                f"customer. Supplier VAT id {_esc(inv.supplier.vat_id)}; customer VAT id {_esc(inv.customer.vat_id)}.",
                st.base,
            )
        )
    elif inv.vat.category == "O":
        out.append(Paragraph(f"<b>{_esc(inv.vat.exemption_text or '')}</b>", st.base))
    if inv.supplier.iban and inv.kind is Kind.INVOICE:
        out.append(
            Paragraph(
                f"Payment by SEPA credit transfer to IBAN {_esc(inv.supplier.iban)}, "
                f"reference {_esc(inv.number or inv.tenant)}.",
                st.base,
            )
        )
    for code, text in mentions(inv):
        if code == "AAI" and text == inv.vat.exemption_text:
            continue
        out.append(Paragraph(_esc(text), st.small))
    out.append(Spacer(1, 3 * mm))
    out.append(
        Paragraph(
            "This PDF is a Factur-X (EN 16931) invoice: the embedded factur-x.xml carries the same data."
            if inv.number is not None
            else "Draft: figures may change until the month is finalized; no number, not a tax document.",
            st.small,
        )
    )
    return out


def render_pdf(inv: Invoice) -> bytes:
    """The PDF of a draft or issued document (no XML embedded): header, parties, lines, totals, mentions."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    st = _styles()
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title=f"{_title(inv).title()} {inv.number or 'draft'} — {inv.supplier.legal_name}",
        author=inv.supplier.legal_name,
        subject=f"GPU time {inv.period.month}, tenant {inv.tenant}",
        creator="gpumeter",
        invariant=1,
    )
    story = [*_header(inv, st), *_parties(inv, st), *_lines_table(inv, st), *_totals(inv, st), *_mentions(inv, st)]
    try:
        doc.build(story)
    except Exception as exc:  # reportlab raises LayoutError and plain Exceptions
        raise DocumentError(f"cannot render the PDF: {exc}", tenant=inv.tenant, period=inv.period.month) from exc
    return _with_output_intent(buf.getvalue())


def _with_output_intent(pdf: bytes) -> bytes:
    """Add an sRGB output intent (PDF/A-3 asks for one; reportlab does not write it)."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )

    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    profile = DecodedStreamObject()
    profile.set_data(_srgb_icc())
    profile[NameObject("/N")] = NumberObject(3)
    intent = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/OutputIntent"),
            NameObject("/S"): NameObject("/GTS_PDFA1"),
            NameObject("/OutputConditionIdentifier"): TextStringObject("sRGB IEC61966-2.1"),
            NameObject("/Info"): TextStringObject("sRGB IEC61966-2.1"),
            # pypdf has no public call to add an indirect object; _add_object is the one it uses itself.
            NameObject("/DestOutputProfile"): writer._add_object(profile),
        }
    )
    writer.root_object[NameObject("/OutputIntents")] = ArrayObject([writer._add_object(intent)])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def facturx_pdf(pdf: bytes, xml: bytes, inv: Invoice) -> bytes:
    """Embed the Factur-X XML into the PDF (level EN 16931, no network)."""
    from facturx import generate_from_binary

    try:
        out: bytes = generate_from_binary(
            pdf,
            xml,
            flavor="factur-x",
            level="en16931",
            check_xsd=False,
            check_schematron=False,
            pdf_metadata={
                "author": inv.supplier.legal_name,
                "keywords": "Factur-X, Invoice, GPU",
                "title": f"{inv.supplier.legal_name}: {_title(inv).title()} {inv.number}",
                "subject": f"{_title(inv).title()} {inv.number} dated {inv.issue_date}, {inv.supplier.legal_name}",
            },
            lang="en",
        )
    except Exception as exc:  # factur-x raises bare Exceptions
        raise DocumentError(f"cannot embed the Factur-X XML in {inv.number}: {exc}", tenant=inv.tenant) from exc
    return out
