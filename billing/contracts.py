"""Contracts: contracts.toml parsed into frozen records (pure: text in, records out).

Three kinds of table (docs/formats.md, "contracts.toml"; decisions in docs/adr/0009-contracts.md)::

    [[reservation]]              # N GPUs of a model held for a term, billed whether used or not
    id = "RES-1"
    tenant = "acme"
    model = "NVIDIA H100 80GB HBM3"
    site = "par1"                # optional: only usage on this site draws from it
    gpus = 8
    start = "2026-10-15"         # UTC date, inclusive
    end = "2027-10-15"           # UTC date, exclusive
    eur_per_gpu_hour = "1.90"

    [[minimum_spend]]            # a true-up line when a month's lines total less
    tenant = "globex"
    eur_per_month = "5000.00"
    start = "2026-01"            # first month, inclusive
    end = "2027-01"              # optional, exclusive

    [[credit]]                   # promotional (before VAT) or prepaid (after VAT)
    id = "PROMO-1"
    tenant = "acme"
    kind = "promotional"
    eur = "1000.00"
    priority = 1                 # optional, default 100; lower first
    start = "2026-10-01"         # UTC date, inclusive
    expires = "2026-11-15"       # optional; UTC date, exclusive

:func:`parse_contracts` checks everything the file can check alone (keys, types, decimal
strings, dates, repeated ids, overlapping reservations or minimum spends, end after start);
:func:`verify_references` checks the names against the tenants, rated models and sites.
Every mistake is a :class:`ContractsError` naming the file, the line and the value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from billing.errors import ContractsError
from billing.money import CENT_PLACES, CURRENCY, PRICE_MAX_PLACES, decimal_field
from gpumeter import tomllines
from gpumeter.errors import read_text
from gpumeter.months import Month, MonthError
from gpumeter.tomllines import header_lines, key_line

DEFAULT_PRIORITY = 100
HOURS_PER_DAY = 24

RESERVATION_KEYS = frozenset({"id", "tenant", "model", "site", "gpus", "start", "end", "eur_per_gpu_hour", "currency"})
MINIMUM_SPEND_KEYS = frozenset({"id", "tenant", "eur_per_month", "start", "end", "currency"})
CREDIT_KEYS = frozenset({"id", "tenant", "kind", "eur", "priority", "start", "expires", "currency"})
TABLES = {"reservation": RESERVATION_KEYS, "minimum_spend": MINIMUM_SPEND_KEYS, "credit": CREDIT_KEYS}
_CURRENCY_LIKE = re.compile(r"^[a-z]{3}(_per_[a-z_]+)?$")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class CreditKind(StrEnum):
    PROMOTIONAL = "promotional"  # a price reduction: an allowance before VAT (EN 16931 BG-20)
    PREPAID = "prepaid"  # money already received: paid after VAT (EN 16931 BT-113)


@dataclass(frozen=True)
class Reservation:
    """``gpus`` GPUs of ``model`` held for ``tenant`` over [start, end) (UTC dates)."""

    id: str
    tenant: str
    model: str
    site: str | None
    gpus: int
    start: date
    end: date
    eur_per_gpu_hour: Decimal
    line: int | None = None

    def days_in(self, month: Month) -> int:
        """Days of the term inside ``month`` (0 when they do not meet)."""
        first = max(self.start, month.first_day)
        stop = min(self.end, month.last_day + timedelta(days=1))
        return max(0, (stop - first).days)

    def included_hours(self, month: Month) -> int:
        """GPU-hours billed in ``month``: gpus × 24 h × its days in the month."""
        return self.gpus * HOURS_PER_DAY * self.days_in(month)

    @property
    def start_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)


@dataclass(frozen=True)
class MinimumSpend:
    """At least ``eur_per_month`` of lines in every month of [start, end)."""

    tenant: str
    eur_per_month: Decimal
    start: Month
    end: Month | None
    id: str | None = None
    index: int = 0
    line: int | None = None

    def covers(self, month: Month) -> bool:
        return self.start <= month and (self.end is None or month < self.end)

    @property
    def label(self) -> str:
        return self.id or f"[[minimum_spend]] #{self.index}"


@dataclass(frozen=True)
class Credit:
    """A promotional or prepaid credit, available to the invoice of every month it overlaps."""

    id: str
    tenant: str
    kind: CreditKind
    eur: Decimal
    priority: int
    start: date
    expires: date | None  # exclusive
    line: int | None = None

    @property
    def first_month(self) -> Month:
        return Month.of(self.start)

    @property
    def last_month(self) -> Month | None:
        """The last month whose invoice may draw from it (None: it never expires)."""
        return None if self.expires is None else Month.of(self.expires - timedelta(days=1))

    def available_in(self, month: Month) -> bool:
        last = self.last_month
        return self.first_month <= month and (last is None or month <= last)

    @property
    def order(self) -> tuple[int, bool, date, str]:
        """Drawing order: priority, then earlier expiry (none last), then id."""
        return (self.priority, self.expires is None, self.expires or date.max, self.id)


@dataclass(frozen=True)
class Contracts:
    reservations: tuple[Reservation, ...] = ()
    minimum_spends: tuple[MinimumSpend, ...] = ()
    credits: tuple[Credit, ...] = ()
    file: str = "contracts.toml"
    sha256: str = ""
    text: str = field(default="", repr=False, compare=False)  # for the line of a key in errors

    def key_line(self, start: int | None, key: str) -> int | None:
        """The line of ``key`` in the table whose header is at ``start``."""
        return key_line(self.text, start, key)

    @cached_property
    def _by_tenant(self) -> dict[str, tuple[list[Reservation], list[MinimumSpend], list[Credit]]]:
        out: dict[str, tuple[list[Reservation], list[MinimumSpend], list[Credit]]] = {}
        for r in self.reservations:
            out.setdefault(r.tenant, ([], [], []))[0].append(r)
        for m in self.minimum_spends:
            out.setdefault(m.tenant, ([], [], []))[1].append(m)
        for c in sorted(self.credits, key=lambda c: c.order):
            out.setdefault(c.tenant, ([], [], []))[2].append(c)
        return out

    def reservations_in(self, month: Month, tenant: str | None = None) -> tuple[Reservation, ...]:
        """The reservations with days in ``month`` (of one tenant, when named)."""
        found = self.reservations if tenant is None else self._by_tenant.get(tenant, ([], [], []))[0]
        return tuple(r for r in found if r.days_in(month))

    def minimum_spend(self, tenant: str, month: Month) -> MinimumSpend | None:
        return next((m for m in self._by_tenant.get(tenant, ([], [], []))[1] if m.covers(month)), None)

    def credits_of(self, tenant: str) -> tuple[Credit, ...]:
        """The tenant's credits in drawing order."""
        return tuple(self._by_tenant.get(tenant, ([], [], []))[2])

    def tenants_in(self, month: Month) -> set[str]:
        """Tenants a reservation day or a minimum spend gives an invoice in ``month``."""
        out = {r.tenant for r in self.reservations_in(month)}
        return out | {m.tenant for m in self.minimum_spends if m.covers(month)}


NO_CONTRACTS = Contracts()


class _Parser:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.starts = {name: header_lines(text, name) for name in TABLES}

    def fail(self, message: str, *, line: int | None, value: object = None) -> ContractsError:
        return ContractsError(message, file=self.file, line=line, value=value)

    def table(self, name: str, index: int, raw: Any) -> tuple[dict[str, Any], int | None, str]:
        starts = self.starts[name]
        start = starts[index - 1] if index - 1 < len(starts) else None
        where = f"[[{name}]] #{index}"
        if not isinstance(raw, dict):
            raise self.fail(f"{where} must be a table", line=start, value=raw)
        for key in raw:
            if key not in TABLES[name]:
                hint = f" (gpumeter bills in {CURRENCY} only)" if _CURRENCY_LIKE.match(key) else ""
                raise self.fail(
                    f"{where}: unknown key {key!r}{hint} (allowed: {', '.join(sorted(TABLES[name]))})",
                    line=key_line(self.text, start, key),
                    value=key,
                )
        if "currency" in raw and raw["currency"] != CURRENCY:
            raise self.fail(
                f"{where}: currency must be {CURRENCY} (gpumeter bills in {CURRENCY} only)",
                line=key_line(self.text, start, "currency"),
                value=raw["currency"],
            )
        return raw, start, where

    def line(self, start: int | None, key: str) -> int | None:
        return key_line(self.text, start, key)

    def string(self, t: Mapping[str, Any], key: str, where: str, start: int | None, *, required: bool) -> str | None:
        if key not in t:
            if required:
                raise self.fail(f"{where}: {key} is required", line=start)
            return None
        raw = t[key]
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(f"{where}: {key} must be a non-empty string", line=self.line(start, key), value=raw)
        return raw.strip()

    def required(self, t: Mapping[str, Any], key: str, where: str, start: int | None) -> str:
        value = self.string(t, key, where, start, required=True)
        assert value is not None  # required=True raises instead
        return value

    def amount(self, t: Mapping[str, Any], key: str, where: str, start: int | None, *, places: int) -> Decimal:
        if key not in t:
            raise self.fail(f"{where}: {key} is required", line=start)
        value, problem = decimal_field(t[key], max_places=places, example="1000.00" if places == 2 else "2.80")
        if value is None:
            if problem and problem.startswith("has more than") and places == CENT_PLACES:
                problem = "is finer than a cent"
            raise self.fail(f"{where}: {key} {problem}", line=self.line(start, key), value=t[key])
        return value

    def integer(self, t: Mapping[str, Any], key: str, where: str, start: int | None, *, least: int) -> int:
        raw = t[key]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < least:
            raise self.fail(
                f"{where}: {key} must be a whole number of at least {least}", line=self.line(start, key), value=raw
            )
        return raw

    def day(self, t: Mapping[str, Any], key: str, where: str, start: int | None, *, required: bool) -> date | None:
        if key not in t:
            if required:
                raise self.fail(f"{where}: {key} is required", line=start)
            return None
        raw = t[key]
        if isinstance(raw, date) and not isinstance(raw, datetime):
            return raw
        if isinstance(raw, str) and _DAY.fullmatch(raw.strip()):
            try:
                return date.fromisoformat(raw.strip())
            except ValueError:
                pass
        raise self.fail(
            f'{where}: {key} must be a UTC date such as "2026-10-15"', line=self.line(start, key), value=raw
        )

    def month(self, t: Mapping[str, Any], key: str, where: str, start: int | None, *, required: bool) -> Month | None:
        if key not in t:
            if required:
                raise self.fail(f"{where}: {key} is required", line=start)
            return None
        try:
            return Month.parse(t[key])
        except MonthError:
            raise self.fail(
                f'{where}: {key} must be a month such as "2026-10"', line=self.line(start, key), value=t[key]
            ) from None

    # ---- the three tables ----
    def reservation(self, index: int, raw: Any) -> Reservation:
        t, start, where = self.table("reservation", index, raw)
        rid = self.required(t, "id", where, start)
        where = f"[[reservation]] {rid!r}"
        first = self.day(t, "start", where, start, required=True)
        end = self.day(t, "end", where, start, required=True)
        assert first is not None and end is not None
        if end <= first:
            raise self.fail(f"{where}: end must be after start ({first})", line=self.line(start, "end"), value=t["end"])
        if "gpus" not in t:
            raise self.fail(f"{where}: gpus is required", line=start)
        return Reservation(
            id=rid,
            tenant=self.required(t, "tenant", where, start),
            model=self.required(t, "model", where, start),
            site=self.string(t, "site", where, start, required=False),
            gpus=self.integer(t, "gpus", where, start, least=1),
            start=first,
            end=end,
            eur_per_gpu_hour=self.amount(t, "eur_per_gpu_hour", where, start, places=PRICE_MAX_PLACES),
            line=start,
        )

    def minimum_spend(self, index: int, raw: Any) -> MinimumSpend:
        t, start, where = self.table("minimum_spend", index, raw)
        mid = self.string(t, "id", where, start, required=False)
        first = self.month(t, "start", where, start, required=True)
        end = self.month(t, "end", where, start, required=False)
        assert first is not None
        if end is not None and end <= first:
            raise self.fail(f"{where}: end must be after start ({first})", line=self.line(start, "end"), value=t["end"])
        return MinimumSpend(
            tenant=self.required(t, "tenant", where, start),
            eur_per_month=self.amount(t, "eur_per_month", where, start, places=CENT_PLACES),
            start=first,
            end=end,
            id=mid,
            index=index,
            line=start,
        )

    def credit(self, index: int, raw: Any) -> Credit:
        t, start, where = self.table("credit", index, raw)
        cid = self.required(t, "id", where, start)
        where = f"[[credit]] {cid!r}"
        kind_text = self.required(t, "kind", where, start)
        if kind_text not in {k.value for k in CreditKind}:
            raise self.fail(
                f"{where}: kind must be promotional or prepaid", line=self.line(start, "kind"), value=kind_text
            )
        first = self.day(t, "start", where, start, required=True)
        expires = self.day(t, "expires", where, start, required=False)
        assert first is not None
        if expires is not None and expires <= first:
            raise self.fail(
                f"{where}: expires must be after start ({first})", line=self.line(start, "expires"), value=t["expires"]
            )
        priority = self.integer(t, "priority", where, start, least=0) if "priority" in t else DEFAULT_PRIORITY
        return Credit(
            id=cid,
            tenant=self.required(t, "tenant", where, start),
            kind=CreditKind(kind_text),
            eur=self.amount(t, "eur", where, start, places=CENT_PLACES),
            priority=priority,
            start=first,
            expires=expires,
            line=start,
        )


def _tables(doc: Mapping[str, Any], name: str, file: str) -> list[Any]:
    raw = doc.get(name, [])
    if not isinstance(raw, list):
        raise ContractsError(f"{name} must be an array of tables [[{name}]]", file=file, value=raw)
    return raw


def parse_contracts(text: str, *, file: str | Path = "contracts.toml") -> Contracts:
    """Parse and check contracts.toml on its own; the first bad value raises :class:`ContractsError`."""
    fname = str(file)
    doc = tomllines.parse(text, file=fname, error=ContractsError, tables=tuple(TABLES))
    p = _Parser(text, fname)
    reservations = [p.reservation(i, t) for i, t in enumerate(_tables(doc, "reservation", fname), start=1)]
    spends = [p.minimum_spend(i, t) for i, t in enumerate(_tables(doc, "minimum_spend", fname), start=1)]
    credits = [p.credit(i, t) for i, t in enumerate(_tables(doc, "credit", fname), start=1)]
    ids: dict[str, int | None] = {}
    for cid, start in (
        [(r.id, r.line) for r in reservations]
        + [(m.id, m.line) for m in spends if m.id]
        + [(c.id, c.line) for c in credits]
    ):
        assert cid is not None
        if cid in ids:
            raise ContractsError(
                f"id {cid!r} is used twice (first at line {key_line(text, ids[cid], 'id')})",
                file=fname,
                line=key_line(text, start, "id"),
                value=cid,
            )
        ids[cid] = start
    same: dict[tuple[str, str, str | None], list[Reservation]] = {}
    for r in reservations:
        for q in same.setdefault((r.tenant, r.model, r.site), []):
            if q.start < r.end and r.start < q.end:
                site = f" on site {r.site!r}" if r.site else " without a site"
                raise ContractsError(
                    f"[[reservation]] {r.id!r} overlaps {q.id!r} (tenant {r.tenant!r}, {r.model}{site}): "
                    "one reservation per tenant, model and site at a time",
                    file=fname,
                    line=r.line,
                    value=r.id,
                )
        same[(r.tenant, r.model, r.site)].append(r)
    by_tenant: dict[str, list[MinimumSpend]] = {}
    for m in spends:
        for earlier in by_tenant.setdefault(m.tenant, []):
            if _months_overlap(earlier, m):
                raise ContractsError(
                    f"{m.label} of tenant {m.tenant!r} overlaps {earlier.label}: "
                    "one minimum spend per tenant and month",
                    file=fname,
                    line=m.line,
                    value=m.tenant,
                )
        by_tenant[m.tenant].append(m)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Contracts(tuple(reservations), tuple(spends), tuple(credits), fname, digest, text)


def _months_overlap(a: MinimumSpend, b: MinimumSpend) -> bool:
    a_before_b_ends = b.end is None or a.start < b.end
    b_before_a_ends = a.end is None or b.start < a.end
    return a_before_b_ends and b_before_a_ends


def read_contracts(path: Path | None) -> Contracts:
    """The contracts at ``path`` (``[billing] contracts``); none configured: no contracts."""
    if path is None:
        return NO_CONTRACTS
    return parse_contracts(read_text(path, "contracts file", ContractsError), file=path)


def verify_references(
    contracts: Contracts,
    *,
    tenants: Collection[str],
    models: Collection[str],
    sites: Collection[str],
) -> None:
    """Every tenant a contract names is in tenants.csv, every model has a rate, every site is in nodes.csv."""
    f = contracts.file

    def unknown(key: str, value: str, start: int | None, where: str, why: str) -> ContractsError:
        return ContractsError(
            f"{where} names {key} {value!r}, {why}", file=f, line=contracts.key_line(start, key), value=value
        )

    absent = "absent from tenants.csv"
    for r in contracts.reservations:
        where = f"[[reservation]] {r.id!r}"
        if r.tenant not in tenants:
            raise unknown("tenant", r.tenant, r.line, where, absent)
        if r.model not in models:
            raise unknown("model", r.model, r.line, where, "a GPU model no [[rate]] of rates.toml prices")
        if r.site is not None and r.site not in sites:
            raise unknown("site", r.site, r.line, where, "where no host of nodes.csv is")
    for m in contracts.minimum_spends:
        if m.tenant not in tenants:
            raise unknown("tenant", m.tenant, m.line, m.label, absent)
    for c in contracts.credits:
        if c.tenant not in tenants:
            raise unknown("tenant", c.tenant, c.line, f"[[credit]] {c.id!r}", absent)
