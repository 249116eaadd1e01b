"""Decoders of tagged objects (``{"__cw__": tag, ...}``) of the portable form.

Each gets the object with its contents already decoded (bottom-up, as a JSON object hook does) and
checks every field: a damaged or hostile object is refused, never half-decoded, and a message can
never make this process import a module or run a module's ``__getattr__``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cachewire.errors import ValueNotPortableError
from cachewire.wire._values import TAG, Refused, parse_zone, raise_refusal, refuse

__all__ = ["decode_tag", "decode_tagged"]


def _text(obj: dict[str, Any], limit: int = 100) -> str:
    text = obj.get("v")
    if not isinstance(text, str) or len(text) > limit:
        refuse(obj, f"needs a text 'v' of at most {limit} characters")
    return text


def _check_fields(obj: dict[str, Any], required: frozenset[str], optional: frozenset[str]) -> None:
    keys = obj.keys()
    if not required <= keys or not keys <= required | optional:
        refuse(obj, f"is a tagged value whose fields are not {sorted(required | optional)}")


_PLAIN_TAG = frozenset({TAG, "v"})
_NOTHING: frozenset[str] = frozenset()


def _decode_float(obj: dict[str, Any]) -> float:
    text = _text(obj, 8)
    if text not in ("nan", "inf", "-inf"):
        refuse(obj, "is a tagged float that is not nan, inf or -inf")
    return float(text)


def _decode_bytes(obj: dict[str, Any]) -> bytes:
    text = obj.get("v")
    if not isinstance(text, str):
        refuse(obj, "is tagged bytes without base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        refuse(obj, "is tagged bytes whose text is not base64")


def _decode_decimal(obj: dict[str, Any]) -> decimal.Decimal:
    text = obj.get("v")
    if not isinstance(text, str):
        refuse(obj, "is a tagged Decimal without text")
    try:
        return decimal.Decimal(text)
    except (decimal.InvalidOperation, ValueError):
        refuse(obj, "is a tagged Decimal whose text is not a number")


def _decode_uuid(obj: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(_text(obj, 45))
    except ValueError:
        refuse(obj, "is a tagged UUID whose text is not a UUID")


def _decode_date(obj: dict[str, Any]) -> dt.date:
    try:
        return dt.date.fromisoformat(_text(obj, 10))
    except ValueError:
        refuse(obj, "is a tagged date whose text is not an ISO date")


def _zone_and_fold(obj: dict[str, Any]) -> tuple[dt.tzinfo | None, int]:
    _check_fields(obj, _PLAIN_TAG, frozenset({"tz", "fold"}))
    fold = obj.get("fold", 0)
    if type(fold) is not int or fold not in (0, 1):
        refuse(obj, "has a 'fold' that is not 0 or 1")
    zone = None if "tz" not in obj else parse_zone(obj["tz"])
    return zone, fold


def _decode_datetime(obj: dict[str, Any]) -> dt.datetime:
    zone, fold = _zone_and_fold(obj)
    try:
        wall = dt.datetime.fromisoformat(_text(obj, 40))
    except ValueError:
        refuse(obj, "is a tagged datetime whose text is not an ISO datetime")
    if wall.tzinfo is not None:
        refuse(obj, "is a tagged datetime with an offset in its text; the zone goes in 'tz'")
    return wall.replace(tzinfo=zone, fold=fold)


def _decode_time(obj: dict[str, Any]) -> dt.time:
    zone, fold = _zone_and_fold(obj)
    try:
        wall = dt.time.fromisoformat(_text(obj, 30))
    except ValueError:
        refuse(obj, "is a tagged time whose text is not an ISO time")
    if wall.tzinfo is not None:
        refuse(obj, "is a tagged time with an offset in its text; the zone goes in 'tz'")
    return wall.replace(tzinfo=zone, fold=fold)


def _decode_items(obj: dict[str, Any]) -> list[Any]:
    items = obj.get("v")
    if type(items) is not list:
        refuse(obj, "is a tagged collection without a list 'v'")
    return items


def _hashable_items(obj: dict[str, Any]) -> list[Any]:
    items = _decode_items(obj)
    for item in items:
        try:
            hash(item)
        except TypeError:
            refuse(obj, "is a tagged set holding an unhashable item")
    return items


def _decode_dict(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in _decode_items(obj):
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            refuse(obj, "is a tagged dict whose items are not [str, value] pairs")
        out[pair[0]] = pair[1]
    return out


def _resolve_enum(path: Any) -> type[enum.Enum]:
    if not isinstance(path, str) or len(path) > 300 or path.count(":") != 1:
        refuse(path, "is not an enum's 'module:QualName'")
    module_name, qualname = path.split(":")
    # Only modules this process has already imported, and only plain attribute lookups: a
    # message can never make a worker import a module or run a module's __getattr__.
    found: Any = sys.modules.get(module_name)
    if found is None:
        refuse(path, "names an enum whose module is not imported in this process")
    for part in qualname.split("."):
        namespace = getattr(found, "__dict__", None)
        found = namespace.get(part) if isinstance(namespace, Mapping) else None
    if not (isinstance(found, type) and issubclass(found, enum.Enum)):
        refuse(path, "names no Enum class in this process")
    return found


def _decode_enum(obj: dict[str, Any]) -> enum.Enum:
    _check_fields(obj, frozenset({TAG, "t", "v"}), _NOTHING)
    cls = _resolve_enum(obj["t"])
    try:
        return cls(obj["v"])
    except Exception:
        refuse(obj, f"is not a member of {cls.__qualname__}")


# Each decoder gets the tagged object with its contents already decoded.
_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": _decode_float,
    "bytes": _decode_bytes,
    "decimal": _decode_decimal,
    "uuid": _decode_uuid,
    "datetime": _decode_datetime,
    "date": _decode_date,
    "time": _decode_time,
    "enum": _decode_enum,
    "tuple": lambda obj: tuple(_decode_items(obj)),
    "set": lambda obj: set(_hashable_items(obj)),
    "frozenset": lambda obj: frozenset(_hashable_items(obj)),
    "dict": _decode_dict,
}
_CHECKED_ELSEWHERE = frozenset({"datetime", "time", "enum"})


def decode_tag(obj: dict[str, Any]) -> Any:
    tag = obj[TAG]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        refuse(tag, "is not a known value tag")
    if tag not in _CHECKED_ELSEWHERE:
        _check_fields(obj, _PLAIN_TAG, _NOTHING)
    return decoder(obj)


def decode_tagged(obj: dict[str, Any]) -> Any:
    """A JSON object hook: the value a tagged object stands for, or the object itself.

    Raises `ValueNotPortableError` for a malformed tagged object.
    """
    if TAG not in obj:
        return obj
    try:
        return decode_tag(obj)
    except Refused as refused:
        raise_refusal(refused, "a tagged value", ValueNotPortableError)
