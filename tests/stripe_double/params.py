"""Request checking by the Stripe SDK's own typed parameters.

Part of the Stripe *test double* (see :mod:`stripe_double.server`). Each route names the
``stripe.params`` TypedDict the SDK declares for it (``InvoiceCreateParams`` …); the
types are read at runtime with :func:`typing.get_type_hints` and a request is checked
against them recursively, the way Stripe's API checks it:

- a parameter the SDK type does not declare → ``Received unknown parameter: x``
  (nested ones as ``period[foo]``);
- a required one missing → ``Missing required param: x.``;
- form strings become ``int`` / ``bool`` / ``Decimal`` by the declared type, or the
  request fails with ``Invalid integer: …`` and the like.

So the double can only accept what the installed SDK could have sent on purpose.
"""

from __future__ import annotations

import re
import types
import typing
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

import stripe
import stripe._request_options as _request_options
from stripe._stripe_object import StripeObject
from typing_extensions import is_typeddict

# RequestOptions (api_key, idempotency_key, headers …) are merged into every top-level
# params TypedDict, but they are client options, never wire parameters.
_OPTION_KEYS = frozenset(_request_options.RequestOptions.__annotations__)
# Names that the SDK only imports under TYPE_CHECKING, needed to evaluate the hints.
_NAMESPACE: dict[str, Any] = {**vars(_request_options), "StripeContext": stripe.StripeContext}
_INT = re.compile(r"^-?\d+$")


class ParamError(ValueError):
    """A parameter Stripe would refuse (400 ``invalid_request_error``)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@cache
def hints(tp: type) -> dict[str, Any]:
    """The declared parameters of a ``stripe.params`` TypedDict, options removed."""
    found = typing.get_type_hints(tp, localns=_NAMESPACE)
    return {k: v for k, v in found.items() if k not in _OPTION_KEYS}


def params_type(name: str) -> type:
    """``stripe.params.<name>`` — fails loudly if the installed SDK lacks it."""
    tp = getattr(stripe.params, name)
    if not is_typeddict(tp):
        raise TypeError(f"stripe.params.{name} is not a TypedDict")
    return typing.cast(type, tp)


def check(params: dict[str, Any], tp: type) -> dict[str, Any]:
    """Check a decoded request against ``tp``; returns the values coerced to their types."""
    out = _check(params, tp, "")
    assert isinstance(out, dict)
    return out


def _name(path: str, key: str) -> str:
    return f"{path}[{key}]" if path else key


def _check(value: Any, tp: Any, path: str) -> Any:
    if tp is Any or tp is object:
        return value
    if isinstance(tp, typing.ForwardRef):  # pragma: no cover - get_type_hints resolves these
        raise TypeError(f"unresolved type {tp!r}")
    if is_typeddict(tp):
        return _typeddict(value, tp, path)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _union(value, get_args(tp), path)
    if origin is Literal:
        if value in get_args(tp):
            return value
        allowed = ", ".join(repr(a) for a in get_args(tp))
        raise ParamError(f"Invalid {path}: must be one of {allowed}", path)
    if origin in (list, typing.List):  # noqa: UP006 - the SDK spells List
        if not isinstance(value, list):
            raise ParamError(f"Invalid array: {path}", path)
        (item,) = get_args(tp) or (Any,)
        return [_check(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict, typing.Mapping) or _is_stripe_object(origin or tp):  # noqa: UP006
        if not isinstance(value, dict):
            raise ParamError(f"Invalid hash: {path}", path)
        args = get_args(tp)
        item = args[-1] if args else Any
        return {k: _check(v, item, _name(path, k)) for k, v in value.items()}
    if isinstance(value, dict | list):
        raise ParamError(f"Invalid {_scalar_name(tp)}: {path} must be a single value", path)
    if tp is str:
        return value
    if tp is bool:
        if value in ("true", "false"):
            return value == "true"
        raise ParamError(f"Invalid boolean: {value}", path)
    if tp is int:
        if isinstance(value, str) and _INT.match(value):
            return int(value)
        raise ParamError(f"Invalid integer: {value}", path)
    if tp is Decimal or tp is float:
        try:
            number = Decimal(value)
        except (InvalidOperation, TypeError):
            number = Decimal("NaN")
        if not number.is_finite():
            raise ParamError(f"Invalid decimal: {value}", path)
        return number
    raise TypeError(f"the double cannot check parameter type {tp!r} at {path}")


def _is_stripe_object(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, StripeObject)


def _scalar_name(tp: Any) -> str:
    return {str: "string", int: "integer", bool: "boolean"}.get(tp, "value")


def _typeddict(value: Any, tp: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParamError(f"Invalid hash: {path or 'body'}", path or None)
    declared = hints(tp)
    for key in value:
        if key not in declared:
            raise ParamError(f"Received unknown parameter: {_name(path, key)}", _name(path, key))
    required: frozenset[str] = getattr(tp, "__required_keys__", frozenset()) - _OPTION_KEYS
    for key in sorted(required):
        if key not in value:
            raise ParamError(f"Missing required param: {_name(path, key)}.", _name(path, key))
    return {k: _check(v, declared[k], _name(path, k)) for k, v in value.items()}


def _union(value: Any, options: tuple[Any, ...], path: str) -> Any:
    # Try the alternative that fits the value's shape first, so its error is the one shown.
    def shape(tp: Any) -> int:
        origin = get_origin(tp)
        if is_typeddict(tp) or origin in (dict, typing.Dict, typing.Mapping) or _is_stripe_object(origin or tp):  # noqa: UP006
            return 0 if isinstance(value, dict) else 2
        if origin in (list, typing.List):  # noqa: UP006
            return 0 if isinstance(value, list) else 2
        return 1 if isinstance(value, dict | list) else 0

    first: ParamError | None = None
    for tp in sorted(options, key=shape):
        try:
            return _check(value, tp, path)
        except ParamError as exc:
            first = first or exc
    assert first is not None
    raise first
