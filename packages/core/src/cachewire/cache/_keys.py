"""Unambiguous cache keys: distinct argument sets never share a key, and no glob characters,
white space or control characters reach a backend."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import string
import uuid
from collections.abc import Mapping
from typing import Any

from cachewire.errors import ConfigurationError

__all__ = ["MAX_KEY_LENGTH", "encode_key", "encode_value", "escape"]

MAX_KEY_LENGTH = 200
_SAFE = frozenset(string.ascii_letters + string.digits + "_.-")


def escape(text: str) -> str:
    """Percent-encode everything but ``[A-Za-z0-9_.-]`` (UTF-8), so the result is glob-free."""
    if all(ch in _SAFE for ch in text):
        return text
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text)


def _sized(tag: str, body: str) -> str:
    # A length prefix makes concatenations unambiguous.
    return f"{tag}{len(body)}~{body}"


def encode_value(value: Any, *, where: str = "argument") -> str:
    """A canonical, type-tagged encoding of one argument value."""
    if value is None:
        return "N"
    if value is True:
        return "T"
    if value is False:
        return "F"
    if isinstance(value, enum.Enum):
        cls = type(value)
        return _sized(
            "e",
            escape(f"{cls.__module__}.{cls.__qualname__}") + encode_value(value.value, where=where),
        )
    if isinstance(value, int):
        return f"i{value}~"
    if isinstance(value, float):
        return _sized("f", escape(repr(value)))
    if isinstance(value, str):
        return _sized("s", escape(value))
    if isinstance(value, bytes):
        return _sized("b", value.hex())
    if isinstance(value, decimal.Decimal):
        return _sized("d", escape(str(value)))
    if isinstance(value, uuid.UUID):
        return _sized("u", value.hex)
    if isinstance(value, dt.datetime):
        return _sized("t", escape(value.isoformat()))
    if isinstance(value, dt.date):
        return _sized("D", escape(value.isoformat()))
    if isinstance(value, dt.time):
        return _sized("H", escape(value.isoformat()))
    if isinstance(value, tuple):
        return _sized("p", "".join(encode_value(v, where=where) for v in value))
    if isinstance(value, list):
        return _sized("l", "".join(encode_value(v, where=where) for v in value))
    if isinstance(value, set | frozenset):
        return _sized("S", "".join(sorted(encode_value(v, where=where) for v in value)))
    if isinstance(value, Mapping):
        pairs = sorted(
            encode_value(k, where=where) + encode_value(v, where=where) for k, v in value.items()
        )
        return _sized("m", "".join(pairs))
    custom = getattr(value, "__cache_key__", None)
    if callable(custom):
        return _sized("o", encode_value(custom(), where=where))
    raise ConfigurationError(
        f"{where} = {value!r} ({type(value).__name__}) cannot be part of a cache key; pass a "
        "plain value (str, int, float, bool, None, bytes, Decimal, UUID, date/time, Enum, or "
        "tuples/lists/dicts/sets of those) or give the type a __cache_key__() method"
    )


def _by_name(item: tuple[str, Any]) -> str:
    return item[0]


def encode_key(prefix: str, arguments: Mapping[str, Any]) -> str:
    """``prefix`` plus the encoded arguments; long keys keep a digest of the full encoding.

    Equal mappings give equal keys whatever their order.
    """
    body = "".join(
        escape(name) + "=" + encode_value(value, where=f"argument {name!r}")
        for name, value in sorted(arguments.items(), key=_by_name)
    )
    key = f"{escape(prefix)}|{body}"
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(body.encode()).hexdigest()
        key = f"{escape(prefix)}|h{digest}"
    return key
