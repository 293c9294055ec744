"""Money: Decimal euros, one rounding mode, rounded only where the invoice says so.

The rule (docs/adr/0005-money-and-rounding.md), stated on every invoice as
:data:`ROUNDING_RULE`:

- a line amount is the *exact* quantity times the unit price, rounded once to the cent;
- the net is the sum of the rounded lines; VAT is the net times the rate, rounded once;
- the total is net plus VAT (no further rounding is needed).

The one rounding mode is :data:`ROUNDING` (half-up: ties go away from zero, the way
invoices are rounded by hand in France and as EN 16931's BR-CO-17 expects). Every
quantisation in billing goes through :func:`round_exact`.

Quantities are exact too. GPU-seconds arrive as ``Decimal`` (nanosecond resolution);
a MIG instance of profile ``Ng`` on a GPU of ``S`` slices counts N/S of an hour per hour,
and 3/7 has no finite decimal expansion. Products that involve such a ratio are therefore
carried as :class:`fractions.Fraction` (exact rationals) and turned into ``Decimal`` by
:func:`round_exact` only at a display or money boundary. Floats never appear.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

#: The one rounding mode of billing. Change it here and nowhere else.
ROUNDING = ROUND_HALF_UP

#: Where amounts are rounded: EUR cents.
CENT_PLACES = 2
#: Display precision of GPU-hours in the invoice JSON (half-up to 6 places; docs/formats.md).
HOURS_DISPLAY_PLACES = 6
#: Precision of quantities in the Factur-X XML (French CTC BR-FR-DEC-02: at most 4 decimals).
HOURS_XML_PLACES = 4
#: Most decimals a unit price may carry (French CTC BR-FR-DEC-03 on BT-146/BT-148).
PRICE_MAX_PLACES = 6

CURRENCY = "EUR"

ROUNDING_RULE = (
    "Rounding: each line amount is the exact GPU-hours times the unit price, rounded once "
    "to the cent (half-up); the net is the sum of the rounded lines; VAT is computed on the "
    "net and rounded half-up to the cent; GPU-hours are shown rounded half-up for display only."
)

ZERO = Decimal("0.00")

Number = Decimal | Fraction | int


def exact(x: Number) -> Fraction:
    """The exact rational value of a Decimal, Fraction or int (no float ever)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, Decimal):
        if not x.is_finite():
            raise ValueError(f"not a finite number: {x}")
        return Fraction(x)
    if isinstance(x, int):
        return Fraction(x)
    raise TypeError(f"money and quantities are Decimal, Fraction or int, not {type(x).__name__}")


def round_exact(x: Number, places: int) -> Decimal:
    """``x`` rounded to ``places`` decimals with :data:`ROUNDING`, exactly.

    A rational is first truncated toward zero to ``places + 1`` decimals. That value is
    exact when the tie ``…5`` is reachable and never crosses it otherwise: the tie is
    representable at ``places + 1`` decimals, so truncation lands on or beyond it exactly
    when the true value does. Then one :meth:`Decimal.quantize` with :data:`ROUNDING`.
    """
    fr = exact(x)
    scale = 10 ** (places + 1)
    scaled = fr * scale
    truncated = int(scaled)  # int() truncates toward zero, as the argument above needs
    as_decimal = Decimal(truncated).scaleb(-(places + 1))
    return as_decimal.quantize(Decimal(1).scaleb(-places), rounding=ROUNDING)


def to_cents(x: Number) -> Decimal:
    """Round an exact amount to the cent (the only place amounts are rounded)."""
    return round_exact(x, CENT_PLACES)


def fmt_amount(d: Decimal) -> str:
    """A money amount as a decimal string with exactly two decimals (``"12.30"``)."""
    return str(to_cents(d))


def fmt_decimal(d: Decimal, *, min_places: int = 0) -> str:
    """A Decimal without exponent or needless trailing zeros, keeping ``min_places``."""
    text = format(d.normalize(), "f") if d != 0 else "0"
    if min_places:
        whole, _, frac = text.partition(".")
        frac = frac.ljust(min_places, "0")
        text = f"{whole}.{frac}"
    return text


def fmt_places(x: Number, places: int) -> str:
    """``x`` rounded half-up to exactly ``places`` decimals, as a string."""
    return str(round_exact(x, places))


def parse_decimal(text: str) -> Decimal | None:
    """A finite Decimal from a decimal string such as ``"2.80"``, else None."""
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not s or any(c in s for c in "eE_ ") or s.lower() in {"nan", "inf", "infinity", "-inf", "+inf"}:
        return None
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def decimal_field(raw: object, *, max_places: int, example: str = "2.80") -> tuple[Decimal | None, str | None]:
    """A positive amount or price written as a decimal string in an input file: (value, None),
    or (None, what is wrong). TOML numbers are refused: a float cannot hold cents exactly."""
    if isinstance(raw, bool | int | float):
        kind = "float" if isinstance(raw, float) else "integer" if not isinstance(raw, bool) else "boolean"
        return None, (
            f'must be a decimal string such as "{example}", not a TOML {kind} (floats cannot hold cents exactly)'
        )
    value = parse_decimal(raw) if isinstance(raw, str) else None
    if value is None:
        return None, f'must be a decimal string such as "{example}"'
    if value <= 0:
        return None, "must be positive"
    if decimal_places(value) > max_places:
        return None, f"has more than {max_places} decimals"
    return value, None


def decimal_places(d: Decimal) -> int:
    """How many decimals ``d`` carries once trailing zeros are dropped."""
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0
