"""Money: one rounding mode, exact quantities, half-cent ties."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from billing import money
from billing.money import fmt_amount, fmt_places, round_exact, to_cents
from billing.vat import decision_for


def test_the_rounding_mode_is_half_up() -> None:
    assert money.ROUNDING == ROUND_HALF_UP


def test_half_cent_ties_go_up_and_just_below_goes_down() -> None:
    assert to_cents(Decimal("1.005")) == Decimal("1.01")  # 1.005 as a float is 1.00499999...
    assert to_cents(Decimal("0.005")) == Decimal("0.01")
    assert to_cents(Decimal("2.675")) == Decimal("2.68")  # banker's rounding would say 2.68 too; float says 2.67
    assert to_cents(Decimal("0.125")) == Decimal("0.13")  # banker's rounding: 0.12
    assert to_cents(Decimal("1.0049999999999")) == Decimal("1.00")
    assert to_cents(Decimal("-1.005")) == Decimal("-1.01")  # half away from zero on credits too


def test_rationals_round_exactly() -> None:
    assert to_cents(Fraction(1, 200)) == Decimal("0.01")  # exactly 0.005
    assert to_cents(Fraction(1, 200) - Fraction(1, 10**30)) == Decimal("0.00")
    assert to_cents(Fraction(1, 200) + Fraction(1, 10**30)) == Decimal("0.01")
    assert round_exact(Fraction(1, 3), 6) == Decimal("0.333333")
    assert round_exact(Fraction(2, 3), 6) == Decimal("0.666667")
    assert fmt_places(Fraction(76, 7), 6) == "10.857143"


@given(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=9))
def test_round_exact_agrees_with_decimal_quantize(d: Decimal) -> None:
    assert round_exact(d, 2) == d.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=10**6))
def test_round_exact_of_a_fraction_is_the_nearest_cent(n: int, d: int) -> None:
    fr = Fraction(n, d)
    cents = round_exact(fr, 2)
    assert abs(Fraction(cents) - fr) <= Fraction(1, 200)
    if abs(Fraction(cents) - fr) == Fraction(1, 200):
        assert Fraction(cents) > fr  # ties go up


def test_amount_strings_have_two_decimals() -> None:
    assert fmt_amount(Decimal("3")) == "3.00"
    assert fmt_amount(Decimal("0.1")) == "0.10"


def test_vat_is_half_up_on_the_net() -> None:
    nl = decision_for("domestic", Decimal("21"))
    assert nl.vat_on(Decimal("0.50")) == Decimal("0.11")  # 0.105 exactly: half-up, not banker's 0.10
    fr = decision_for("domestic", Decimal("20"))
    assert fr.vat_on(Decimal("10.03")) == Decimal("2.01")
    assert decision_for("reverse_charge", Decimal("0")).vat_on(Decimal("999.99")) == Decimal("0.00")
