"""VAT treatment of one tenant's invoice (pure).

Place of supply of B2B services is the customer's country (Directive 2006/112/EC Art. 44;
CGI art. 259-1). So, with the supplier's country from gpumeter.toml:

- tenant in the supplier's country -> **domestic**: that country's standard rate;
- tenant in another EU member state with a valid VAT id -> **reverse charge**: no VAT,
  EN 16931 category ``AE``, code ``VATEX-EU-AE``, both VAT ids, "Autoliquidation" /
  "Reverse charge — Art. 196 Directive 2006/112/EC" (Art. 226(11a));
- tenant outside the EU -> **outside scope** of EU VAT, category ``O``, ``VATEX-EU-O``;
- tenant in the EU without a valid VAT id -> :class:`VatError` naming the tenant: gpumeter
  does not invoice EU consumers (their VAT would be due through OSS, Art. 58).

VAT ids are checked offline (python-stdnum: format and check digits). That is a gate, not
evidence: Reg. 282/2011 Art. 18 wants a VIES confirmation kept with the invoice, which is
the finance team's job (``stdnum.eu.vat.check_vies``); invoicing never depends on VIES
being up.

:data:`EU_STANDARD_RATES` — standard VAT rates of the 27 member states, in percent, from
the European Commission's "VAT rates applied in the Member States of the European Union"
(taxation_customs, situation at 1 January 2025), updated for the changes in force since:
Estonia 24 % (1 July 2025), Romania 21 % (1 August 2025), Slovakia 23 % (1 January 2025),
Finland 25.5 % (1 September 2024). Checked November 2026; revisit each January.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from billing.errors import VatError
from billing.money import round_exact
from gpumeter.countries import EU27
from metering.inventory import validate_vat_id

EU_STANDARD_RATES: dict[str, Decimal] = {
    "AT": Decimal("20"),
    "BE": Decimal("21"),
    "BG": Decimal("20"),
    "CY": Decimal("19"),
    "CZ": Decimal("21"),
    "DE": Decimal("19"),
    "DK": Decimal("25"),
    "EE": Decimal("24"),
    "ES": Decimal("21"),
    "FI": Decimal("25.5"),
    "FR": Decimal("20"),
    "GR": Decimal("24"),
    "HR": Decimal("25"),
    "HU": Decimal("27"),
    "IE": Decimal("23"),
    "IT": Decimal("22"),
    "LT": Decimal("21"),
    "LU": Decimal("17"),
    "LV": Decimal("21"),
    "MT": Decimal("18"),
    "NL": Decimal("21"),
    "PL": Decimal("23"),
    "PT": Decimal("23"),
    "RO": Decimal("21"),
    "SE": Decimal("25"),
    "SI": Decimal("22"),
    "SK": Decimal("23"),
}

REVERSE_CHARGE_TEXT = "Autoliquidation — Reverse charge — Art. 196 Directive 2006/112/EC"
OUTSIDE_SCOPE_TEXT = (
    "VAT not applicable — services supplied to a business established outside the EU, "
    "outside the scope of EU VAT (Art. 44 Directive 2006/112/EC; CGI art. 259-1)"
)


class Treatment(StrEnum):
    DOMESTIC = "domestic"
    REVERSE_CHARGE = "reverse_charge"
    OUTSIDE_SCOPE = "outside_scope"


@dataclass(frozen=True)
class VatDecision:
    treatment: Treatment
    rate_percent: Decimal  # 0 unless domestic
    category: str  # EN 16931 BT-118/BT-151: S, AE or O
    exemption_text: str | None  # BT-120
    exemption_code: str | None  # BT-121 (VATEX)
    show_buyer_vat_id: bool  # Art. 226(4): the customer's VAT id when the customer is liable

    @property
    def ids_in_xml(self) -> bool:
        """Whether the e-invoice XML may carry VAT ids: not for ``O`` (BR-O-02), which
        forbids seller and buyer VAT identifiers (the PDF still prints the supplier's)."""
        return self.category != "O"

    @property
    def stated_rate(self) -> Decimal | None:
        """The rate the XML states (BT-119 / BT-152); none for ``O`` (not subject to VAT)."""
        return None if self.category == "O" else self.rate_percent

    def vat_on(self, net: Decimal) -> Decimal:
        """VAT on a net amount, rounded half-up to the cent (BR-CO-17)."""
        return round_exact(net * self.rate_percent / Decimal(100), 2)


@dataclass(frozen=True)
class VatCheck:
    """Result of :func:`check_tenant_vat`: a decision, or the reason there is none."""

    tenant: str
    passed: bool
    decision: VatDecision | None
    reason: str | None


def standard_rate(country: str) -> Decimal | None:
    return EU_STANDARD_RATES.get(country)


def check_tenant_vat(*, supplier_country: str, tenant: str, tenant_country: str, tenant_vat_id: str) -> VatCheck:
    """The VAT treatment of an invoice to ``tenant`` (never raises)."""
    if tenant_country == supplier_country:
        rate = standard_rate(supplier_country)
        if rate is None:
            return VatCheck(
                tenant, False, None, f"no standard VAT rate known for the supplier country {supplier_country}"
            )
        if tenant_vat_id:
            reason = validate_vat_id(tenant_vat_id, tenant_country)
            if reason:
                return VatCheck(tenant, False, None, f"VAT id {tenant_vat_id!r} is not valid: {reason}")
        elif tenant_country in EU27:
            return VatCheck(tenant, False, None, f"tenant in {tenant_country} has no VAT id")
        return VatCheck(tenant, True, VatDecision(Treatment.DOMESTIC, rate, "S", None, None, False), None)
    if tenant_country in EU27:
        if not tenant_vat_id:
            return VatCheck(
                tenant,
                False,
                None,
                f"tenant in {tenant_country} (EU) has no VAT id: reverse charge needs one, "
                "and supplies to EU consumers are not invoiced by gpumeter",
            )
        reason = validate_vat_id(tenant_vat_id, tenant_country)
        if reason:
            return VatCheck(
                tenant, False, None, f"VAT id {tenant_vat_id!r} is not valid for {tenant_country}: {reason}"
            )
        return VatCheck(
            tenant,
            True,
            VatDecision(Treatment.REVERSE_CHARGE, Decimal(0), "AE", REVERSE_CHARGE_TEXT, "VATEX-EU-AE", True),
            None,
        )
    return VatCheck(
        tenant,
        True,
        VatDecision(Treatment.OUTSIDE_SCOPE, Decimal(0), "O", OUTSIDE_SCOPE_TEXT, "VATEX-EU-O", False),
        None,
    )


def decide_vat(*, supplier_country: str, tenant: str, tenant_country: str, tenant_vat_id: str) -> VatDecision:
    """Like :func:`check_tenant_vat`, but raises :class:`VatError` naming the tenant."""
    result = check_tenant_vat(
        supplier_country=supplier_country, tenant=tenant, tenant_country=tenant_country, tenant_vat_id=tenant_vat_id
    )
    if result.decision is None:
        raise VatError(f"cannot invoice tenant {tenant!r}: {result.reason}", value=tenant_vat_id or None, tenant=tenant)
    return result.decision


def decision_for(treatment: str, rate_percent: Decimal) -> VatDecision:
    """Rebuild the decision an issued invoice used (credit notes mirror their original)."""
    t = Treatment(treatment)
    if t is Treatment.DOMESTIC:
        return VatDecision(t, rate_percent, "S", None, None, False)
    if t is Treatment.REVERSE_CHARGE:
        return VatDecision(t, Decimal(0), "AE", REVERSE_CHARGE_TEXT, "VATEX-EU-AE", True)
    return VatDecision(t, Decimal(0), "O", OUTSIDE_SCOPE_TEXT, "VATEX-EU-O", False)
