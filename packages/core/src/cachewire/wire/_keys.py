"""Key fragments: the canonical text of a value inside a cache key or a partition tag.

Type-tagged and length-prefixed, holding only ``[A-Za-z0-9_.~%@!-]``: equal values of one type give
equal text, values of different types (``1``, ``1.0``, ``True``, ``"1"``, an enum member) never
do, and no glob character, space or control character reaches a backend.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

from cachewire.errors import ValueNotPortableError
from cachewire.wire._values import (
    CONTAINER_KINDS,
    DOCS,
    EXACT_KINDS,
    MAX_DEPTH,
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
    wall_clock,
)

__all__ = ["escape", "key_fragment"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode())


def escape(text: str) -> str:
    """Percent-encode everything but ``[A-Za-z0-9_.-]`` (UTF-8), so the result is glob-free."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_percent, text)


def _sized(tag: str, body: str) -> str:
    # A length prefix makes concatenations unambiguous.
    return f"{tag}{len(body)}~{body}"


def _key_wall_clock(tag: str, value: dt.datetime | dt.time) -> str:
    wall, zone, fold = wall_clock(value)
    body = escape(wall)
    if zone is not None:
        body += "@" + escape(zone)
    if fold:
        body += "!1"
    return _sized(tag, body)


def _key(value: Any, depth: int) -> str:
    kind = kind_of(value)
    if kind is None:
        custom = getattr(value, "__cache_key__", None)
        if callable(custom):
            # Keys only: such an object names itself in a key but cannot travel to a worker.
            return _sized("o", _key(custom(), depth))
        not_portable(value)
    if kind in CONTAINER_KINDS:
        if depth >= MAX_DEPTH:
            refuse(value, f"is nested more than {MAX_DEPTH} containers deep")
        return _KEY_CONTAINERS[kind](value, depth + 1)
    return _KEY_SCALARS[kind](value)


def _key_items(values: Any, depth: int) -> list[str]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_key(item, depth))
        except Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return out


def _key_dict(value: Mapping[Any, Any], depth: int) -> str:
    pairs = []
    for name, item in value.items():
        name = check_key(name)
        try:
            pairs.append(_sized("s", escape(name)) + _key(item, depth))
        except Refused as refused:
            refused.path.append(f"[{bounded_repr(name, 40)}]")
            raise
    pairs.sort()
    return _sized("m", "".join(pairs))


def _key_float(value: float) -> str:
    return _sized("f", escape(repr(float.__float__(value))))


def _key_enum(value: enum.Enum) -> str:
    return _sized("e", escape(enum_path(value)) + _key(value.value, 0))


_KEY_SCALARS: dict[str, Callable[[Any], str]] = {
    "none": lambda _: "N",
    "bool": lambda value: "T" if value else "F",
    "int": lambda value: f"i{check_int(value)}~",
    "float": _key_float,
    "str": lambda value: _sized("s", escape(check_str(value))),
    "bytes": lambda value: _sized("b", bytes(value).hex()),
    "decimal": lambda value: _sized("d", escape(str(value))),
    "uuid": lambda value: _sized("u", value.hex),
    "datetime": lambda value: _key_wall_clock("t", value),
    "date": lambda value: _sized("D", dt.date.isoformat(value)),
    "time": lambda value: _key_wall_clock("H", value),
    "enum": _key_enum,
}
_KEY_CONTAINERS: dict[str, Callable[[Any, int], str]] = {
    "tuple": lambda value, depth: _sized("p", "".join(_key_items(value, depth))),
    "list": lambda value, depth: _sized("l", "".join(_key_items(value, depth))),
    "set": lambda value, depth: _sized("S", "".join(sorted(_key_items(value, depth)))),
    "frozenset": lambda value, depth: _sized("Z", "".join(sorted(_key_items(value, depth)))),
    "dict": _key_dict,
}
# The commonest argument types, straight to their encoder.
_KEY_SIMPLE: dict[type, Callable[[Any], str]] = {
    kind: _KEY_SCALARS[name]
    for kind, name in EXACT_KINDS.items()
    if name in ("none", "bool", "int", "str", "uuid", "date")
}


def key_fragment(
    value: Any, *, where: str = "value", error: type[ValueNotPortableError] = ValueNotPortableError
) -> str:
    """The canonical key text of one value: equal values of one type give equal text, anything
    else differs. Also accepts objects with a ``__cache_key__()`` method (keys only).

    Raises ``error`` (a `ValueNotPortableError`) naming ``where`` for anything else.
    """
    simple = _KEY_SIMPLE.get(type(value))
    try:
        return simple(value) if simple is not None else _key(value, 0)
    except Refused as refused:
        raise_refusal(refused, where, error)
    except RecursionError:
        raise error(f"{where} is nested too deeply to encode; {DOCS}") from None
