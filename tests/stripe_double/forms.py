"""Stripe's form encoding, decoded: ``metadata[k]=v``, ``lines[0][amount]=5``, ``expand[]=x``.

Part of the Stripe *test double* (see :mod:`stripe_double.server`). Values stay strings;
:mod:`stripe_double.params` turns them into ints, booleans and decimals by the SDK's
declared types, as Stripe's API does on its side.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SUB = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A body or query string that Stripe would refuse to parse."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def decode(text: str) -> dict[str, Any]:
    """Parse a urlencoded body into nested dicts and lists of strings."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise FormError(f"Invalid request body: {exc}") from exc
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if m is None:
            raise FormError(f"Invalid parameter name: {key}", key)
        parts = [m.group(1), *_SUB.findall(m.group(2))]
        _put(root, parts, value, key)
    return _listify(root)


def _put(node: dict[str, Any], parts: list[str], value: str, key: str) -> None:
    head, rest = parts[0], parts[1:]
    if not rest:
        if head == "":
            node[str(_next_index(node))] = value
        elif head in node and isinstance(node[head], dict):
            raise FormError(f"Invalid hash: {key} is given both as a value and as a hash", key)
        else:
            node[head] = value
        return
    if head == "":
        head = str(_next_index(node))
    child = node.setdefault(head, {})
    if not isinstance(child, dict):
        raise FormError(f"Invalid hash: {key} is given both as a value and as a hash", key)
    _put(child, rest, value, key)


def _next_index(node: dict[str, Any]) -> int:
    return sum(1 for k in node if k.isdigit())


def _listify(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        out[key] = _convert(value)
    return out


def _convert(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if value and all(k.isdigit() for k in value):
        return [_convert(value[k]) for k in sorted(value, key=int)]
    return _listify(value)
