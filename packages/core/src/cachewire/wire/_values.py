"""The one policy of which values can travel: the types, their limits, and the refusals.

A value that can travel is one of the types in docs/values.md, nested at most `MAX_DEPTH`
containers deep. Every place where a value leaves the calling code goes through this package:
cache keys and partition tags (`key_fragment`, in ``_keys``), rule and task arguments and the
JSON codec (`to_portable` / `from_portable`, in ``_portable`` and ``_tags``). All of them classify
a value with `kind_of` and check it with the functions here, so a value that makes a key also
travels to a worker, and comes back as a value that makes the same key.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import math
import reprlib
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cachewire.errors import ValueNotPortableError

__all__ = [
    "CONTAINER_KINDS",
    "DOCS",
    "EXACT_KINDS",
    "INT_LIMIT",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "REPR_LIMIT",
    "TAG",
    "Refused",
    "bounded_repr",
    "check_int",
    "check_key",
    "check_str",
    "enum_path",
    "kind_of",
    "not_portable",
    "parse_zone",
    "raise_refusal",
    "refuse",
    "run_encoder",
    "wall_clock",
]

#: Containers may nest this deep; deeper values are refused (never a `RecursionError`).
MAX_DEPTH = 100
#: Integers may have this many decimal digits (Python's own default limit for ``str(int)``).
MAX_INT_DIGITS = 4300
#: Error messages show at most this many characters of a refused value.
REPR_LIMIT = 200
#: The key that marks a tagged object in the portable form.
TAG = "__cw__"

INT_LIMIT = 10**MAX_INT_DIGITS
_INT_LOW = -INT_LIMIT  # negated once, not on every check
DOCS = "see docs/values.md for the values that can travel"


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


class Refused(Exception):
    """Raised inside the encoders and turned into `ValueNotPortableError` at the top."""

    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str] = []


def refuse(value: Any, reason: str) -> NoReturn:
    raise Refused(value, reason)


def raise_refusal(refused: Refused, where: str, error: type[ValueNotPortableError]) -> NoReturn:
    path = "".join(reversed(refused.path))
    raise error(
        f"{where}{path} = {bounded_repr(refused.value)} ({type(refused.value).__name__}) "
        f"{refused.reason}; {DOCS}"
    ) from None


def run_encoder(
    function: Callable[[Any, int], Any],
    value: Any,
    where: str,
    error: type[ValueNotPortableError],
) -> Any:
    try:
        return function(value, 0)
    except Refused as refused:
        raise_refusal(refused, where, error)
    except RecursionError:
        # Only when the caller's own stack is nearly exhausted: MAX_DEPTH keeps ours short.
        raise error(f"{where} is nested too deeply to encode; {DOCS}") from None


# ------------------------------------------------------------------------ classification

EXACT_KINDS: dict[type, str] = {
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


def kind_of(value: Any) -> str | None:
    """The policy's name for the type of ``value``, or None when it cannot travel."""
    kind = EXACT_KINDS.get(type(value))
    if kind is not None:
        return kind
    for base, name in _BASES:
        if isinstance(value, base):
            return name
    return None


def not_portable(value: Any) -> NoReturn:
    refuse(value, "cannot travel: it is not one of the portable types")


def check_int(value: int) -> int:
    if not _INT_LOW < value < INT_LIMIT:
        refuse(value, f"has more than {MAX_INT_DIGITS} digits")
    return int.__int__(value)


def check_str(value: str) -> str:
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            refuse(value, "holds a lone surrogate, which is not text (it has no UTF-8 form)")
    return str.__str__(value)


def check_key(key: Any) -> str:
    if not isinstance(key, str):
        refuse(key, "is a dict key: dict keys must be str")
    return check_str(key)


def enum_path(member: enum.Enum) -> str:
    cls = type(member)
    if "<locals>" in cls.__qualname__:
        refuse(
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
        refuse(value, reason)
    refuse(
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


def parse_zone(spec: Any) -> dt.tzinfo:
    if not isinstance(spec, str) or not 0 < len(spec) <= 64:
        refuse(spec, "is not a time zone name")
    zone = _zone_named(spec)
    if zone is None:
        refuse(spec, "is not a UTC offset of the form +HH:MM, nor a time zone this process knows")
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


def wall_clock(value: dt.datetime | dt.time) -> tuple[str, str | None, int]:
    """(naive ISO text, zone spec or None, fold) of a datetime or time."""
    tzinfo = value.tzinfo
    zone = None if tzinfo is None else _zone_spec(tzinfo, value)
    return value.replace(tzinfo=None, fold=0).isoformat(), zone, value.fold


#: The kinds that hold other values (and count towards `MAX_DEPTH`).
CONTAINER_KINDS = frozenset({"tuple", "list", "set", "frozenset", "dict"})
