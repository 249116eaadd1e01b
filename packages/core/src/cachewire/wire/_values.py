"""The one policy of which values can travel, and their two encodings.

A value that can travel is one of the types in docs/values.md, nested at most `MAX_DEPTH`
containers deep. Every place where a value leaves the calling code uses this module: cache keys
and partition tags (`key_fragment`), rule and task arguments (`to_portable` / `from_portable`,
inside the wire envelope) and the JSON codec. So a value that makes a key also travels to a worker,
and comes back as a value that makes the same key.

Two encodings, one classification (`_kind`):

- the *key fragment*: canonical, type-tagged, length-prefixed text holding only
  ``[A-Za-z0-9_.~%-]``; equal values give equal text, values of different types never do;
- the *portable form*: JSON data where plain JSON values stand for themselves and every other type
  is an object ``{"__cw__": tag, ...}`` that decodes back to the same type.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import functools
import math
import re
import reprlib
import sys
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cachewire.errors import ValueNotPortableError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "REPR_LIMIT",
    "TAG",
    "bounded_repr",
    "decode_tagged",
    "decode_value",
    "encode_value",
    "escape",
    "from_portable",
    "from_portable_arguments",
    "key_fragment",
    "to_portable",
    "to_portable_arguments",
]

#: Containers may nest this deep; deeper values are refused (never a `RecursionError`).
MAX_DEPTH = 100
#: Integers may have this many decimal digits (Python's own default limit for ``str(int)``).
MAX_INT_DIGITS = 4300
#: Error messages show at most this many characters of a refused value.
REPR_LIMIT = 200
#: The key that marks a tagged object in the portable form.
TAG = "__cw__"

_INT_LIMIT = 10**MAX_INT_DIGITS
_DOCS = "see docs/values.md for the values that can travel"


# ------------------------------------------------------------------------------ errors


def bounded_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """A repr of ``value`` of at most ``limit`` characters, whatever its size; never raises."""
    if isinstance(value, int) and not isinstance(value, bool):
        bits = value.bit_length()
        if bits > 160:
            digits = int(bits * math.log10(2)) + 1
            return f"<int of about {digits} digits>"
    try:
        if isinstance(value, str | bytes) and len(value) > limit:
            text = repr(value[:limit]) + f"... ({len(value)} in all)"
        else:
            text = _REPR.repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _short_repr_config() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxstring = 60
    short.maxother = 60
    short.maxlong = 40
    return short


_REPR = _short_repr_config()


class _Refused(Exception):
    """Raised inside the encoders and turned into `ValueNotPortableError` at the top."""

    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str] = []


def _refuse(value: Any, reason: str) -> NoReturn:
    raise _Refused(value, reason)


def _raise_refusal(refused: _Refused, where: str, error: type[ValueNotPortableError]) -> NoReturn:
    path = "".join(reversed(refused.path))
    raise error(
        f"{where}{path} = {bounded_repr(refused.value)} ({type(refused.value).__name__}) "
        f"{refused.reason}; {_DOCS}"
    ) from None


def _wrap(
    function: Callable[[Any, int], Any],
    value: Any,
    where: str,
    error: type[ValueNotPortableError],
) -> Any:
    try:
        return function(value, 0)
    except _Refused as refused:
        _raise_refusal(refused, where, error)
    except RecursionError:
        # Only when the caller's own stack is nearly exhausted: MAX_DEPTH keeps ours short.
        raise error(f"{where} is nested too deeply to encode; {_DOCS}") from None


# ------------------------------------------------------------------------ classification

_EXACT: dict[type, str] = {
    type(None): "none",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    bytes: "bytes",
    decimal.Decimal: "decimal",
    uuid.UUID: "uuid",
    dt.datetime: "datetime",
    dt.date: "date",
    dt.time: "time",
    tuple: "tuple",
    list: "list",
    set: "set",
    frozenset: "frozenset",
    dict: "dict",
}

# Subclasses travel as their base type (a namedtuple as a tuple, an OrderedDict as a dict), in
# this order: an IntEnum is an Enum before it is an int, a datetime before it is a date.
_BASES: tuple[tuple[type, str], ...] = (
    (enum.Enum, "enum"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (bytes, "bytes"),
    (decimal.Decimal, "decimal"),
    (uuid.UUID, "uuid"),
    (dt.datetime, "datetime"),
    (dt.date, "date"),
    (dt.time, "time"),
    (tuple, "tuple"),
    (list, "list"),
    (frozenset, "frozenset"),
    (set, "set"),
    (Mapping, "dict"),
)


def _kind(value: Any) -> str | None:
    """The policy's name for the type of ``value``, or None when it cannot travel."""
    kind = _EXACT.get(type(value))
    if kind is not None:
        return kind
    for base, name in _BASES:
        if isinstance(value, base):
            return name
    return None


def _not_portable(value: Any) -> NoReturn:
    _refuse(value, "cannot travel: it is not one of the portable types")


def _check_int(value: int) -> int:
    if not -_INT_LIMIT < value < _INT_LIMIT:
        _refuse(value, f"has more than {MAX_INT_DIGITS} digits")
    return int.__int__(value)


def _check_str(value: str) -> str:
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            _refuse(value, "holds a lone surrogate, which is not text (it has no UTF-8 form)")
    return str.__str__(value)


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        _refuse(key, "is a dict key: dict keys must be str")
    return _check_str(key)


def _enum_path(member: enum.Enum) -> str:
    cls = type(member)
    if "<locals>" in cls.__qualname__:
        _refuse(
            member,
            "is a member of an enum defined inside a function; define the enum at module level "
            "so every process can find it by name",
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def _zone_spec(tzinfo: dt.tzinfo, value: Any) -> str:
    """Names a time zone: an IANA key for a `ZoneInfo`, ``+HH:MM[:SS[.ffffff]]`` for a fixed
    `datetime.timezone`. Other tzinfo classes cannot be named reliably, so they do not travel."""
    if type(tzinfo) is zoneinfo.ZoneInfo or type(tzinfo) is dt.timezone:
        # Equal fixed offsets with other names compare equal: the name is part of the cache key.
        spec, reason = _name_zone(tzinfo, tzinfo.tzname(None))
        if spec is not None:
            return spec
        _refuse(value, reason)
    _refuse(
        value,
        f"has a {type(tzinfo).__name__} tzinfo; aware values must use zoneinfo.ZoneInfo or "
        "datetime.timezone so every process names the zone the same way",
    )


@functools.lru_cache(maxsize=512)
def _name_zone(tzinfo: dt.tzinfo, name: str | None) -> tuple[str | None, str]:
    """(name, "") of a ZoneInfo or a datetime.timezone, or (None, why it has no name)."""
    if isinstance(tzinfo, zoneinfo.ZoneInfo):
        if tzinfo.key is None:
            return None, "has a ZoneInfo read from a file, which has no key to travel by"
        return tzinfo.key, ""
    offset = tzinfo.utcoffset(None)
    if offset is None or name != dt.timezone(offset).tzname(None):
        return None, "has a named fixed-offset timezone; use datetime.timezone(offset)"
    return _format_offset(offset), ""


def _format_offset(offset: dt.timedelta) -> str:
    sign = "-" if offset < dt.timedelta(0) else "+"
    offset = abs(offset)
    hours, rest = divmod(offset, dt.timedelta(hours=1))
    minutes, rest = divmod(rest, dt.timedelta(minutes=1))
    text = f"{sign}{hours:02d}:{minutes:02d}"
    if rest:
        text += f":{rest.seconds:02d}"
        if rest.microseconds:
            text += f".{rest.microseconds:06d}"
    return text


def _parse_zone(spec: Any) -> dt.tzinfo:
    if not isinstance(spec, str) or not 0 < len(spec) <= 64:
        _refuse(spec, "is not a time zone name")
    zone = _zone_named(spec)
    if zone is None:
        _refuse(spec, "is not a UTC offset of the form +HH:MM, nor a time zone this process knows")
    return zone


@functools.lru_cache(maxsize=512)
def _zone_named(spec: str) -> dt.tzinfo | None:
    if spec[0] in "+-":
        try:
            offset = dt.time.fromisoformat(f"00:00{spec}").utcoffset()
        except ValueError:
            return None
        if offset is None or _format_offset(offset) != spec:
            return None
        return dt.timezone(offset)
    try:
        return zoneinfo.ZoneInfo(spec)
    except Exception:  # not found, a directory, a path outside the zone database, ...
        return None


def _wall_clock(value: dt.datetime | dt.time) -> tuple[str, str | None, int]:
    """(naive ISO text, zone spec or None, fold) of a datetime or time."""
    tzinfo = value.tzinfo
    zone = None if tzinfo is None else _zone_spec(tzinfo, value)
    return value.replace(tzinfo=None, fold=0).isoformat(), zone, value.fold


# ------------------------------------------------------------------------- key fragments


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
    wall, zone, fold = _wall_clock(value)
    body = escape(wall)
    if zone is not None:
        body += "@" + escape(zone)
    if fold:
        body += "!1"
    return _sized(tag, body)


def _key(value: Any, depth: int) -> str:
    kind = _kind(value)
    if kind is None:
        custom = getattr(value, "__cache_key__", None)
        if callable(custom):
            # Keys only: such an object names itself in a key but cannot travel to a worker.
            return _sized("o", _key(custom(), depth))
        _not_portable(value)
    if kind in _CONTAINERS:
        if depth >= MAX_DEPTH:
            _refuse(value, f"is nested more than {MAX_DEPTH} containers deep")
        return _KEY_CONTAINERS[kind](value, depth + 1)
    return _KEY_SCALARS[kind](value)


def _key_items(values: Any, depth: int) -> list[str]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_key(item, depth))
        except _Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return out


def _key_dict(value: Mapping[Any, Any], depth: int) -> str:
    pairs = []
    for name, item in value.items():
        name = _check_key(name)
        try:
            pairs.append(_sized("s", escape(name)) + _key(item, depth))
        except _Refused as refused:
            refused.path.append(f"[{bounded_repr(name, 40)}]")
            raise
    pairs.sort()
    return _sized("m", "".join(pairs))


def _key_float(value: float) -> str:
    return _sized("f", escape(repr(float.__float__(value))))


def _key_enum(value: enum.Enum) -> str:
    return _sized("e", escape(_enum_path(value)) + _key(value.value, 0))


_KEY_SCALARS: dict[str, Callable[[Any], str]] = {
    "none": lambda _: "N",
    "bool": lambda value: "T" if value else "F",
    "int": lambda value: f"i{_check_int(value)}~",
    "float": _key_float,
    "str": lambda value: _sized("s", escape(_check_str(value))),
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
_CONTAINERS = frozenset(_KEY_CONTAINERS)
# The commonest argument types, straight to their encoder.
_KEY_SIMPLE: dict[type, Callable[[Any], str]] = {
    kind: _KEY_SCALARS[name]
    for kind, name in _EXACT.items()
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
    except _Refused as refused:
        _raise_refusal(refused, where, error)
    except RecursionError:
        raise error(f"{where} is nested too deeply to encode; {_DOCS}") from None


# --------------------------------------------------------------------------- portable form


def _tagged(tag: str, body: Any) -> dict[str, Any]:
    return {TAG: tag, "v": body}


def _portable_float(value: float) -> Any:
    value = float.__float__(value)
    if math.isfinite(value):
        return value
    # JSON has no NaN or infinities; a tag keeps them exact.
    return _tagged("float", repr(value))


def _portable_wall_clock(tag: str, value: dt.datetime | dt.time) -> dict[str, Any]:
    wall, zone, fold = _wall_clock(value)
    out: dict[str, Any] = {TAG: tag, "v": wall}
    if zone is not None:
        out["tz"] = zone
    if fold:
        out["fold"] = 1
    return out


def _portable_enum(value: enum.Enum) -> dict[str, Any]:
    return {TAG: "enum", "t": _enum_path(value), "v": _portable(value.value, 0)}


def _portable(value: Any, depth: int) -> Any:
    simple = _PORTABLE_SIMPLE.get(type(value))
    if simple is not None:
        return simple(value)
    kind = _kind(value)
    if kind is None:
        _not_portable(value)
    if kind in _CONTAINERS:
        if depth >= MAX_DEPTH:
            _refuse(value, f"is nested more than {MAX_DEPTH} containers deep")
        return _PORTABLE_CONTAINERS[kind](value, depth + 1)
    return _PORTABLE_SCALARS[kind](value)


def _portable_items(values: Any, depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_portable(item, depth))
        except _Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return out


def _portable_dict(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, item in value.items():
        name = _check_key(name)
        try:
            out[name] = _portable(item, depth)
        except _Refused as refused:
            refused.path.append(f"[{bounded_repr(name, 40)}]")
            raise
    if TAG in out:
        # A user dict that holds the tag key itself travels as pairs, never read as a tag.
        return _tagged("dict", [[name, item] for name, item in out.items()])
    return out


_PORTABLE_SCALARS: dict[str, Callable[[Any], Any]] = {
    "none": lambda _: None,
    "bool": lambda value: value,
    "int": _check_int,
    "float": _portable_float,
    "str": _check_str,
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
    for kind, name in _EXACT.items()
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
    return _wrap(_portable, value, where, error)


# -------------------------------------------------------------------------------- decoding


def _text(obj: dict[str, Any], limit: int = 100) -> str:
    text = obj.get("v")
    if not isinstance(text, str) or len(text) > limit:
        _refuse(obj, f"needs a text 'v' of at most {limit} characters")
    return text


def _check_fields(obj: dict[str, Any], required: frozenset[str], optional: frozenset[str]) -> None:
    keys = obj.keys()
    if not required <= keys or not keys <= required | optional:
        _refuse(obj, f"is a tagged value whose fields are not {sorted(required | optional)}")


_PLAIN_TAG = frozenset({TAG, "v"})
_NOTHING: frozenset[str] = frozenset()


def _decode_float(obj: dict[str, Any]) -> float:
    text = _text(obj, 8)
    if text not in ("nan", "inf", "-inf"):
        _refuse(obj, "is a tagged float that is not nan, inf or -inf")
    return float(text)


def _decode_bytes(obj: dict[str, Any]) -> bytes:
    text = obj.get("v")
    if not isinstance(text, str):
        _refuse(obj, "is tagged bytes without base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        _refuse(obj, "is tagged bytes whose text is not base64")


def _decode_decimal(obj: dict[str, Any]) -> decimal.Decimal:
    text = obj.get("v")
    if not isinstance(text, str):
        _refuse(obj, "is a tagged Decimal without text")
    try:
        return decimal.Decimal(text)
    except (decimal.InvalidOperation, ValueError):
        _refuse(obj, "is a tagged Decimal whose text is not a number")


def _decode_uuid(obj: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(_text(obj, 45))
    except ValueError:
        _refuse(obj, "is a tagged UUID whose text is not a UUID")


def _decode_date(obj: dict[str, Any]) -> dt.date:
    try:
        return dt.date.fromisoformat(_text(obj, 10))
    except ValueError:
        _refuse(obj, "is a tagged date whose text is not an ISO date")


def _zone_and_fold(obj: dict[str, Any]) -> tuple[dt.tzinfo | None, int]:
    _check_fields(obj, _PLAIN_TAG, frozenset({"tz", "fold"}))
    fold = obj.get("fold", 0)
    if type(fold) is not int or fold not in (0, 1):
        _refuse(obj, "has a 'fold' that is not 0 or 1")
    zone = None if "tz" not in obj else _parse_zone(obj["tz"])
    return zone, fold


def _decode_datetime(obj: dict[str, Any]) -> dt.datetime:
    zone, fold = _zone_and_fold(obj)
    try:
        wall = dt.datetime.fromisoformat(_text(obj, 40))
    except ValueError:
        _refuse(obj, "is a tagged datetime whose text is not an ISO datetime")
    if wall.tzinfo is not None:
        _refuse(obj, "is a tagged datetime with an offset in its text; the zone goes in 'tz'")
    return wall.replace(tzinfo=zone, fold=fold)


def _decode_time(obj: dict[str, Any]) -> dt.time:
    zone, fold = _zone_and_fold(obj)
    try:
        wall = dt.time.fromisoformat(_text(obj, 30))
    except ValueError:
        _refuse(obj, "is a tagged time whose text is not an ISO time")
    if wall.tzinfo is not None:
        _refuse(obj, "is a tagged time with an offset in its text; the zone goes in 'tz'")
    return wall.replace(tzinfo=zone, fold=fold)


def _decode_items(obj: dict[str, Any]) -> list[Any]:
    items = obj.get("v")
    if type(items) is not list:
        _refuse(obj, "is a tagged collection without a list 'v'")
    return items


def _hashable_items(obj: dict[str, Any]) -> list[Any]:
    items = _decode_items(obj)
    for item in items:
        try:
            hash(item)
        except TypeError:
            _refuse(obj, "is a tagged set holding an unhashable item")
    return items


def _decode_dict(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in _decode_items(obj):
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            _refuse(obj, "is a tagged dict whose items are not [str, value] pairs")
        out[pair[0]] = pair[1]
    return out


def _resolve_enum(path: Any) -> type[enum.Enum]:
    if not isinstance(path, str) or len(path) > 300 or path.count(":") != 1:
        _refuse(path, "is not an enum's 'module:QualName'")
    module_name, qualname = path.split(":")
    # Only modules this process has already imported, and only plain attribute lookups: a
    # message can never make a worker import a module or run a module's __getattr__.
    found: Any = sys.modules.get(module_name)
    if found is None:
        _refuse(path, "names an enum whose module is not imported in this process")
    for part in qualname.split("."):
        namespace = getattr(found, "__dict__", None)
        found = namespace.get(part) if isinstance(namespace, Mapping) else None
    if not (isinstance(found, type) and issubclass(found, enum.Enum)):
        _refuse(path, "names no Enum class in this process")
    return found


def _decode_enum(obj: dict[str, Any]) -> enum.Enum:
    _check_fields(obj, frozenset({TAG, "t", "v"}), _NOTHING)
    cls = _resolve_enum(obj["t"])
    try:
        return cls(obj["v"])
    except Exception:
        _refuse(obj, f"is not a member of {cls.__qualname__}")


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


def _decode_tagged(obj: dict[str, Any]) -> Any:
    tag = obj[TAG]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        _refuse(tag, "is not a known value tag")
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
        return _decode_tagged(obj)
    except _Refused as refused:
        _raise_refusal(refused, "a tagged value", ValueNotPortableError)


_JSON_LEAVES = frozenset({str, int, float, bool, type(None)})


def _leaf_as_is(value: Any) -> bool:
    """A JSON leaf that is its own value and needs no check (the commonest case, kept cheap)."""
    kind = type(value)
    if kind is str:
        return value.isascii()  # type: ignore[no-any-return]
    if kind is int:
        return -_INT_LIMIT < value < _INT_LIMIT  # type: ignore[no-any-return]
    return kind is bool or value is None


def _from_portable(value: Any, depth: int) -> Any:
    if _leaf_as_is(value):
        return value
    kind = type(value)
    if kind in _JSON_LEAVES:
        if kind is str:
            return _check_str(value)
        if kind is int:
            return _check_int(value)
        if not math.isfinite(value):
            _refuse(value, "is a bare NaN or infinity; they travel tagged")
        return value
    if depth >= MAX_DEPTH:
        _refuse(value, f"is nested more than {MAX_DEPTH} containers deep")
    if kind is list:
        return _from_portable_items(value, depth + 1)
    if kind is dict:
        decoded = {}
        for name, item in value.items():
            if not name.isascii():
                _check_key(name)
            if _leaf_as_is(item):
                decoded[name] = item
                continue
            try:
                decoded[name] = _from_portable(item, depth + 1)
            except _Refused as refused:
                refused.path.append(f"[{bounded_repr(name, 40)}]")
                raise
        if TAG in decoded:
            return _decode_tagged(decoded)
        return decoded
    _refuse(value, "is not JSON data")


def _from_portable_items(values: list[Any], depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_from_portable(item, depth))
        except _Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return out


def from_portable(
    data: Any, *, where: str = "value", error: type[ValueNotPortableError] = ValueNotPortableError
) -> Any:
    """The value that portable (JSON) data stands for; raises ``error`` naming ``where`` when
    the data is malformed or outside the policy (too deep, too long an integer, ...)."""
    return _wrap(_from_portable, data, where, error)


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
                _check_key(name)
            out[name] = _portable(value, 0)
    except _Refused as refused:
        _raise_refusal(refused, f"{where} {bounded_repr(name, 60)}", error)
    except RecursionError:
        raise error(f"{where} {bounded_repr(name, 60)} is nested too deeply; {_DOCS}") from None
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
                _check_key(name)
            out[name] = value if _leaf_as_is(value) else _from_portable(value, 0)
    except _Refused as refused:
        _raise_refusal(refused, f"{where} {bounded_repr(name, 60)}", error)
    except RecursionError:
        raise error(f"{where} {bounded_repr(name, 60)} is nested too deeply; {_DOCS}") from None
    return out
