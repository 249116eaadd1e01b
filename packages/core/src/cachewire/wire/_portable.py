"""The portable form: JSON data for every value of the policy, and back.

Plain JSON values stand for themselves; every other type is an object ``{"__cw__": tag, ...}``
(decoded by ``_tags``) that comes back as the same type.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import math
from collections.abc import Callable, Mapping
from typing import Any

from cachewire.errors import ValueNotPortableError
from cachewire.wire._tags import decode_tag
from cachewire.wire._values import (
    CONTAINER_KINDS,
    DOCS,
    EXACT_KINDS,
    INT_LIMIT,
    MAX_DEPTH,
    TAG,
    Refused,
    bounded_repr,
    check_int,
    check_key,
    check_str,
    enum_path,
    kind_of,
    not_portable,
    raise_refusal,
    refuse,
    run_encoder,
    wall_clock,
)

__all__ = [
    "decode_value",
    "encode_value",
    "from_portable",
    "from_portable_arguments",
    "to_portable",
    "to_portable_arguments",
]


def _tagged(tag: str, body: Any) -> dict[str, Any]:
    return {TAG: tag, "v": body}


def _portable_float(value: float) -> Any:
    value = float.__float__(value)
    if math.isfinite(value):
        return value
    # JSON has no NaN or infinities; a tag keeps them exact.
    return _tagged("float", repr(value))


def _portable_wall_clock(tag: str, value: dt.datetime | dt.time) -> dict[str, Any]:
    wall, zone, fold = wall_clock(value)
    out: dict[str, Any] = {TAG: tag, "v": wall}
    if zone is not None:
        out["tz"] = zone
    if fold:
        out["fold"] = 1
    return out


def _portable_enum(value: enum.Enum) -> dict[str, Any]:
    return {TAG: "enum", "t": enum_path(value), "v": _portable(value.value, 0)}


def _portable(value: Any, depth: int) -> Any:
    simple = _PORTABLE_SIMPLE.get(type(value))
    if simple is not None:
        return simple(value)
    kind = kind_of(value)
    if kind is None:
        not_portable(value)
    if kind in CONTAINER_KINDS:
        if depth >= MAX_DEPTH:
            refuse(value, f"is nested more than {MAX_DEPTH} containers deep")
        return _PORTABLE_CONTAINERS[kind](value, depth + 1)
    return _PORTABLE_SCALARS[kind](value)


def _portable_items(values: Any, depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_portable(item, depth))
        except Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return out


def _portable_dict(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, item in value.items():
        name = check_key(name)
        try:
            out[name] = _portable(item, depth)
        except Refused as refused:
            refused.path.append(f"[{bounded_repr(name, 40)}]")
            raise
    if TAG in out:
        # A user dict that holds the tag key itself travels as pairs, never read as a tag.
        return _tagged("dict", [[name, item] for name, item in out.items()])
    return out


_PORTABLE_SCALARS: dict[str, Callable[[Any], Any]] = {
    "none": lambda _: None,
    "bool": lambda value: value,
    "int": check_int,
    "float": _portable_float,
    "str": check_str,
    "bytes": lambda value: _tagged("bytes", base64.b64encode(value).decode()),
    "decimal": lambda value: _tagged("decimal", str(value)),
    "uuid": lambda value: _tagged("uuid", str(value)),
    "datetime": lambda value: _portable_wall_clock("datetime", value),
    "date": lambda value: _tagged("date", dt.date.isoformat(value)),
    "time": lambda value: _portable_wall_clock("time", value),
    "enum": _portable_enum,
}
# The commonest types, straight to their encoder.
_PORTABLE_SIMPLE: dict[type, Callable[[Any], Any]] = {
    kind: _PORTABLE_SCALARS[name]
    for kind, name in EXACT_KINDS.items()
    if name in ("none", "bool", "int", "str", "float")
}
_PORTABLE_CONTAINERS: dict[str, Callable[[Any, int], Any]] = {
    "tuple": lambda value, depth: _tagged("tuple", _portable_items(value, depth)),
    "list": _portable_items,
    "set": lambda value, depth: _tagged("set", _portable_items(value, depth)),
    "frozenset": lambda value, depth: _tagged("frozenset", _portable_items(value, depth)),
    "dict": _portable_dict,
}


def to_portable(
    value: Any, *, where: str = "value", error: type[ValueNotPortableError] = ValueNotPortableError
) -> Any:
    """The portable (JSON-ready) form of ``value``; `from_portable` gives back an equal value of
    the same type. Raises ``error`` (a `ValueNotPortableError`) naming ``where``."""
    return run_encoder(_portable, value, where, error)


_INT_LOW = -INT_LIMIT  # negated once, not on every check
_JSON_LEAVES = frozenset({str, int, float, bool, type(None)})


def _leaf_as_is(value: Any) -> bool:
    """A JSON leaf that is its own value and needs no check (the commonest case, kept cheap)."""
    kind = type(value)
    if kind is str:
        return value.isascii()  # type: ignore[no-any-return]
    if kind is int:
        return _INT_LOW < value < INT_LIMIT  # type: ignore[no-any-return]
    return kind is bool or value is None


def _from_portable(value: Any, depth: int) -> Any:
    if _leaf_as_is(value):
        return value
    kind = type(value)
    if kind in _JSON_LEAVES:
        if kind is str:
            return check_str(value)
        if kind is int:
            return check_int(value)
        if not math.isfinite(value):
            refuse(value, "is a bare NaN or infinity; they travel tagged")
        return value
    if depth >= MAX_DEPTH:
        refuse(value, f"is nested more than {MAX_DEPTH} containers deep")
    if kind is list:
        return _from_portable_items(value, depth + 1)
    if kind is not dict:
        refuse(value, "is not JSON data")
    decoded = {}
    for name, item in value.items():
        if not name.isascii():
            check_key(name)
        if _leaf_as_is(item):
            decoded[name] = item
            continue
        try:
            decoded[name] = _from_portable(item, depth + 1)
        except Refused as refused:
            refused.path.append(f"[{bounded_repr(name, 40)}]")
            raise
    return decode_tag(decoded) if TAG in decoded else decoded


def _from_portable_items(values: list[Any], depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_from_portable(item, depth))
        except Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return out


def from_portable(
    data: Any, *, where: str = "value", error: type[ValueNotPortableError] = ValueNotPortableError
) -> Any:
    """The value that portable (JSON) data stands for; raises ``error`` naming ``where`` when
    the data is malformed or outside the policy (too deep, too long an integer, ...)."""
    return run_encoder(_from_portable, data, where, error)


def encode_value(value: Any, *, where: str = "value") -> Any:
    """`to_portable` under the name rule code uses: the portable form of one argument."""
    return to_portable(value, where=where)


def decode_value(data: Any, *, where: str = "value") -> Any:
    """`from_portable` under the name rule code uses: the value of one portable argument."""
    return from_portable(data, where=where)


def to_portable_arguments(
    arguments: Mapping[str, Any],
    *,
    where: str,
    error: type[ValueNotPortableError] = ValueNotPortableError,
) -> dict[str, Any]:
    """`to_portable` of each value of a mapping of names; errors name ``where`` and the name.

    Raises ``error`` for a value that cannot travel and for a name that is not a str.
    """
    out: dict[str, Any] = {}
    name: Any = None
    try:
        for name, value in arguments.items():
            if type(name) is not str:
                check_key(name)
            out[name] = _portable(value, 0)
    except Refused as refused:
        raise_refusal(refused, f"{where} {bounded_repr(name, 60)}", error)
    except RecursionError:
        raise error(f"{where} {bounded_repr(name, 60)} is nested too deeply; {DOCS}") from None
    return out


def from_portable_arguments(
    data: Mapping[str, Any],
    *,
    where: str,
    error: type[ValueNotPortableError] = ValueNotPortableError,
) -> dict[str, Any]:
    """`from_portable` of each value of a JSON object; errors name ``where`` and the name."""
    out: dict[str, Any] = {}
    name: Any = None
    try:
        for name, value in data.items():
            if type(name) is not str or not name.isascii():
                check_key(name)
            out[name] = value if _leaf_as_is(value) else _from_portable(value, 0)
    except Refused as refused:
        raise_refusal(refused, f"{where} {bounded_repr(name, 60)}", error)
    except RecursionError:
        raise error(f"{where} {bounded_repr(name, 60)} is nested too deeply; {DOCS}") from None
    return out
