"""Declared TOML tables: the keys each table accepts and their types, checked in one pass (pure).

A configuration file is declared once, as a mapping of table names to their keys, each key
with a :class:`Kind` (a table or a list of tables carries the keys inside it, and the keys
each of its tables must have). :func:`check` walks a parsed document against the declaration
and reports a :class:`ConfigError` for each unknown table, unknown or missing key or wrong
type, naming the file, the line, the key and the value (by default the first is raised; a
:class:`~gpumeter.errors.Problems` that keeps them gets them all, and the document back
without them). What turns values into settings (ranges, URL forms, relations between keys)
runs after it, can rely on the types, and refuses a value with :func:`refuse`, which names
it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from gpumeter.errors import ConfigError, Problems, strict
from gpumeter.tomllines import header_lines, key_line, table_line


@dataclass(frozen=True)
class Kind:
    """A type a key accepts. ``what`` completes "must be …"; ``keys`` declares a table's keys,
    ``required`` those of them it must have."""

    what: str
    accepts: Callable[[object], bool]
    keys: Mapping[str, Kind] | None = None
    required: tuple[str, ...] = ()


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


STRING = Kind("a string", lambda v: isinstance(v, str))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
WHOLE = Kind("a whole number", _whole)
NUMBER = Kind("a number", lambda v: _whole(v) or isinstance(v, float))
STRINGS = Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
STRING_TABLE = Kind("a table of strings", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))


def table(keys: Mapping[str, Kind]) -> Kind:
    """A table (``[name]`` or an inline ``{ … }``) with these keys."""
    return Kind("a table", lambda v: isinstance(v, dict), keys)


def table_list(keys: Mapping[str, Kind], *, required: tuple[str, ...] = ()) -> Kind:
    """A list of tables (``[[name]]`` or ``[{ … }, …]``), each with these keys (``required``
    ones in every table). An item that is not a table is refused by its position."""
    return Kind("a list of tables", lambda v: isinstance(v, list), keys, required)


KeyPath = tuple[str | int, ...]  # table and key names; an int is a 1-based item of a list of tables


def check(
    doc: Mapping[str, object],
    tables: Mapping[str, Mapping[str, Kind]],
    *,
    file: Path,
    text: str,
    problems: Problems | None = None,
) -> dict[str, dict[str, object]]:
    """``doc`` less what it must not hold: each unknown table, unknown key or value of the
    wrong type is reported to ``problems`` (by default the first is raised) and left out, so
    that a refused key reads as absent (its default). A key is left out whole when anything
    inside it is refused."""
    report = strict(problems)
    declared = {name: table(keys) for name, keys in tables.items()}
    out: dict[str, dict[str, object]] = {}
    for name, value in doc.items():
        errors = list(_entry(name, value, declared, (), file, text, deep=False))
        for exc in errors:
            report.add(exc)
        if errors:
            continue
        assert isinstance(value, dict)  # _entry said so
        out[name] = {}
        for key, item in value.items():
            errors = list(_entry(key, item, tables[name], (name,), file, text))
            for exc in errors:
                report.add(exc)
            if not errors:
                out[name][key] = item
    return out


def _entry(
    name: str, item: object, keys: Mapping[str, Kind], path: KeyPath, file: Path, text: str, *, deep: bool = True
) -> Iterator[ConfigError]:
    """What is wrong with ``name = item`` in a table of ``keys`` at ``path`` (and, when
    ``deep``, inside it), in the order it is written."""
    here = (*path, name)
    kind = keys.get(name)
    if kind is None:
        if not path:
            message = f"unknown table [{name}] (tables: {', '.join(keys)})"
            yield ConfigError(message, file=file, line=line_of(text, here))
        else:
            yield ConfigError(
                f"[{_dotted(path)}] unknown key {name!r} = {_short(item)} (known keys: {', '.join(keys)})",
                file=file,
                line=line_of(text, here),
            )
        return
    if not kind.accepts(item):
        yield refuse(here, f"must be {kind.what}, not {_noun(item)}", item, file=file, text=text)
        return
    if kind.keys is None or not deep:
        return
    if isinstance(item, dict):
        items: list[tuple[KeyPath, object]] = [(here, item)]
    else:
        assert isinstance(item, list)  # a list of tables: Kind.accepts said so
        items = [((*here, i), sub) for i, sub in enumerate(item, start=1)]
    for at, sub in items:
        if not isinstance(sub, dict):  # an item of a list of tables
            yield refuse(at, f"must be a table, not {_noun(sub)}", sub, file=file, text=text)
            continue
        for key, value in sub.items():
            yield from _entry(key, value, kind.keys, at, file, text)
        missing = [key for key in kind.required if key not in sub]
        if missing:
            yield refuse(at, f"lacks {', '.join(missing)}", None, file=file, text=text)


def where(path: KeyPath) -> str:
    """How an error names ``path``: ``[table]``, ``[table.sub] key`` or ``[table.list[2]]``."""
    *container, last = path
    if not container or isinstance(last, int):
        return f"[{_dotted(path)}]"
    return f"[{_dotted(tuple(container))}] {last}"


def refuse(
    path: KeyPath, why: str, value: object, *, file: Path, text: str, line_at: KeyPath | None = None
) -> ConfigError:
    """The error for the value at ``path``: ``<where> <why>``, naming the file, the line of
    ``path`` (or of ``line_at``) and the value."""
    line = line_of(text, line_at or path)
    return ConfigError(f"{where(path)} {why}", file=file, line=line, value=value)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_NOUNS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),  # before int: a bool is an int to isinstance
    (int, "an integer"),
    (float, "a decimal number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a table"),
    ((datetime, date, time), "a date or time"),
)


def _noun(value: object) -> str:
    return next((noun for kinds, noun in _NOUNS if isinstance(value, kinds)), type(value).__name__)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def line_of(text: str, path: KeyPath) -> int | None:
    """The line where ``path`` (a table, a key, an item of a list of tables) is written, if found."""
    *container, last = path
    if isinstance(last, int):  # an item of a list of tables: its [[header]], else the list's own line
        headers = header_lines(text, ".".join(str(p) for p in container))
        return headers[last - 1] if len(headers) >= last else line_of(text, tuple(container))
    if not container:
        return table_line(text, last) or key_line(text, 0, last)
    if isinstance(container[-1], int):
        start = line_of(text, tuple(container))
        headers = header_lines(text, ".".join(str(p) for p in container[:-1]))
        return key_line(text, start, last) if len(headers) >= container[-1] else start
    start = table_line(text, ".".join(str(p) for p in container))
    if start is None:  # an inline table: the key is on its parent's line
        return line_of(text, tuple(container))
    return key_line(text, start, last)
