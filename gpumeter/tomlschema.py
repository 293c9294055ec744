"""Declared TOML tables: the keys each table accepts and their types, checked in one pass (pure).

A configuration file is declared once, as a mapping of table names to their keys, each key
with a :class:`Kind` (a table or a list of tables carries the keys inside it, and the keys
each of its tables must have). :func:`check` walks a parsed document against the declaration
and raises one :class:`ConfigError` for the first unknown table, unknown or missing key or
wrong type, naming the file, the line, the key and the value. What turns values into
settings (ranges, URL forms, relations between keys) runs after it, can rely on the types,
and refuses a value with :func:`refuse`, which names it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from gpumeter.errors import ConfigError
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


def check(doc: Mapping[str, object], tables: Mapping[str, Mapping[str, Kind]], *, file: Path, text: str) -> None:
    """Refuse the first unknown table or key, or value of the wrong type, in ``doc``."""
    _walk(doc, {name: table(keys) for name, keys in tables.items()}, (), file, text)


def _walk(value: Mapping[str, object], keys: Mapping[str, Kind], path: KeyPath, file: Path, text: str) -> None:
    for name, item in value.items():
        here = (*path, name)
        kind = keys.get(name)
        if kind is None:
            if not path:
                raise ConfigError(
                    f"unknown table [{name}] (tables: {', '.join(keys)})", file=file, line=line_of(text, here)
                )
            raise ConfigError(
                f"[{_dotted(path)}] unknown key {name!r} = {_short(item)} (known keys: {', '.join(keys)})",
                file=file,
                line=line_of(text, here),
            )
        if not kind.accepts(item):
            raise refuse(here, f"must be {kind.what}, not {_noun(item)}", item, file=file, text=text)
        if kind.keys is None:
            continue
        if isinstance(item, dict):
            items: list[tuple[KeyPath, object]] = [(here, item)]
        else:
            assert isinstance(item, list)  # a list of tables: Kind.accepts said so
            items = [((*here, i), sub) for i, sub in enumerate(item, start=1)]
        for at, sub in items:
            if not isinstance(sub, dict):  # an item of a list of tables
                raise refuse(at, f"must be a table, not {_noun(sub)}", sub, file=file, text=text)
            _walk(sub, kind.keys, at, file, text)
            missing = [key for key in kind.required if key not in sub]
            if missing:
                raise refuse(at, f"lacks {', '.join(missing)}", None, file=file, text=text)


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
