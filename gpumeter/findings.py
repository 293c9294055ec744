"""Findings of ``gpumeter check``: one frozen record per thing checked, and how it prints.

Each domain checks what it knows (metering: telemetry and inventory; billing: rates; audit:
the signing key; the core: configuration and store) and returns :class:`Finding` values;
the app puts them together. A finding prints as one line::

    PASS|WARN|FAIL <check>: <what was found> — <how to fix it>

and as a JSON object (``status``, ``check``, ``message``, ``fix``, ``details``) for scripts.
``FAIL`` means a command would stop or produce wrong numbers; ``WARN`` is worth knowing but
metering copes; ``PASS`` says what was verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from gpumeter.errors import GpumeterError

EXAMPLES = 5
"""How many examples a finding names before it says "and N more"."""


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 - a status word, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    """One result of a check: its status, what was found, how to fix it, and the evidence."""

    status: Status
    check: str
    message: str
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def line(self) -> str:
        text = f"{self.status} {self.check}: {self.message}"
        return f"{text} — {self.fix}" if self.fix else text

    def as_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "check": self.check,
            "message": self.message,
            "fix": self.fix,
            "details": _plain(self.details),
        }


def passed(check: str, message: str, **details: Any) -> Finding:
    return Finding(Status.PASS, check, message, "", details)


def warned(check: str, message: str, fix: str, **details: Any) -> Finding:
    return Finding(Status.WARN, check, message, fix, details)


def failed(check: str, message: str, fix: str, **details: Any) -> Finding:
    return Finding(Status.FAIL, check, message, fix, details)


def from_problems(check: str, problems: Iterable[GpumeterError], fix: str) -> list[Finding]:
    """One FAIL per problem a loader reported, naming file, line and value."""
    return [
        failed(check, exc.explain(), fix, file=exc.file, line=exc.line, value=_plain(exc.value)) for exc in problems
    ]


def some(values: Iterable[str], n: int = EXAMPLES) -> str:
    """``a, b, c`` or ``a, b, c and 7 more`` (values quoted, sorted)."""
    items = sorted(values)
    shown = ", ".join(repr(v) for v in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def worst(findings: Iterable[Finding]) -> Status:
    statuses = {f.status for f in findings}
    for s in (Status.FAIL, Status.WARN):
        if s in statuses:
            return s
    return Status.PASS


def _plain(value: Any) -> Any:
    """A JSON-ready copy: mappings to dicts, sets and tuples to lists, other objects to text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)
