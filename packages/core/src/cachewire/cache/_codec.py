"""Codecs turn cached values into bytes for a remote backend. JSON is strict by default and
follows the value policy of `cachewire.wire`."""

from __future__ import annotations

import gc
import hashlib
import hmac
import inspect
import json
import pickle
from collections.abc import Callable, Iterable
from itertools import chain, compress, repeat
from math import isfinite
from operator import contains
from typing import Any, Protocol

from cachewire.errors import ConfigurationError, SerializationError
from cachewire.wire import MAX_DEPTH, TAG, bounded_repr, decode_tagged, to_portable

__all__ = ["Codec", "JsonCodec", "PickleCodec", "codec_call"]


class Codec(Protocol):
    """Encodes values so that decoding gives back an equal value, or raises.

    A codec may also accept a keyword ``key`` (the cache key the value is stored under) on both
    methods; adapters pass it to codecs that do, so a codec can bind its bytes to the key.
    """

    codec_id: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def _takes_key(method: Callable[..., Any]) -> bool:
    try:
        return "key" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def codec_call(
    codec: Codec,
) -> tuple[Callable[[Any, str], bytes], Callable[[bytes, str], Any]]:
    """``(encode(value, key), decode(data, key))`` for ``codec``, passing the key to a codec whose
    methods accept it and leaving it out for one whose methods do not."""
    if _takes_key(codec.encode) and _takes_key(codec.decode):
        keyed: Any = codec

        def encode_keyed(value: Any, key: str) -> bytes:
            return keyed.encode(value, key=key)  # type: ignore[no-any-return]

        def decode_keyed(data: bytes, key: str) -> Any:
            return keyed.decode(data, key=key)

        return encode_keyed, decode_keyed

    def encode(value: Any, key: str) -> bytes:
        return codec.encode(value)

    def decode(data: bytes, key: str) -> Any:
        return codec.decode(data)

    return encode, decode


_LEAVES = frozenset({str, int, float, bool, type(None)})
_CONTAINERS = frozenset({list, dict})
_PLAIN = _LEAVES | _CONTAINERS
_STR = frozenset({str})
_DICT = frozenset({dict})
_LIST = frozenset({list})
_FLOAT = frozenset({float})
_dumps_plain = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

_orjson_dumps: Callable[[Any], bytes] | None
try:  # the optional extra cachewire[orjson]: the same JSON, encoded several times faster
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover  (the workspace installs it; tests cover both)
    _orjson_dumps = None


def _is_plain_json(value: Any, *, check_floats: bool) -> bool:
    """True when ``value`` is made of exact dicts (str keys, no tag key), lists, str, int, float,
    bool and None, at most `MAX_DEPTH` deep: JSON that comes back unchanged, with no tags; with
    ``check_floats``, also no NaN or infinity (for an encoder that does not refuse them itself).

    One pass per nesting level, with the per-item work in C, because a walk in Python costs
    more than the encoding itself. Only call it on values an encoder accepted (so acyclic).
    """
    level: list[Any] = [value]
    for depth in range(MAX_DEPTH + 1):
        types = set(map(type, level))
        if check_floats and float in types and not all(map(isfinite, _only(_FLOAT, level))):
            return False
        if types <= _LEAVES:
            return True
        if not types <= _PLAIN or depth == MAX_DEPTH:
            return False
        containers = level if types <= _CONTAINERS else list(_only(_CONTAINERS, level))
        if dict in types:
            dicts = containers if list not in types else list(_only(_DICT, containers))
            if any(map(contains, dicts, repeat(TAG))):
                return False
        children = _children(containers)
        if children is None:
            return False
        level = children
    return False  # pragma: no cover  (the loop returns)


def _only(kinds: frozenset[type], values: list[Any]) -> Iterable[Any]:
    return compress(values, map(kinds.__contains__, map(type, values)))


# The layout `_children` relies on, checked once: an interpreter that walks a dict differently
# takes the key-by-key path.
_REFERENTS_SHOW_KEYS = (
    len(gc.get_referents({1: None})) == 2 and len(gc.get_referents({"a": None})) == 1
)


def _children(containers: list[Any]) -> list[Any] | None:
    """The items of exact lists and the values of exact dicts, or None when a dict has a key
    that is not an exact str.

    CPython lists a dict's keys among its referents only when they are not all exact str (the
    dict then left its str-only layout); otherwise only its values. So when the referents are
    as many as the items, every key is an exact str and was never walked; when not, the keys
    are looked at one by one.
    """
    if _REFERENTS_SHOW_KEYS:
        found = gc.get_referents(*containers)
        if len(found) == sum(map(len, containers)):
            return found
    dicts = list(_only(_DICT, containers))
    if not set(map(type, chain.from_iterable(dicts))) <= _STR:
        return None
    children: list[Any] = list(chain.from_iterable(map(dict.values, dicts)))
    children.extend(chain.from_iterable(_only(_LIST, containers)))
    return children


_TAG_BYTES = f'"{TAG}"'.encode()
_scan_plain = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner
_scan_tagged = json.JSONDecoder(object_hook=decode_tagged).scan_once  # type: ignore[attr-defined]


class JsonCodec:
    """Strict JSON for exactly the values of the value policy (docs/values.md).

    Plain JSON values (dicts with str keys, lists, str, int, float, bool, None) are stored as
    they are; tuples, sets, UUID, Decimal, dates and times, bytes, enums, NaN and infinities are
    stored as tagged objects and come back as the same type. Anything else raises
    `ValueNotPortableError` (a `SerializationError`) before anything is stored.
    """

    codec_id = "json2"

    def encode(self, value: Any, *, key: str | None = None) -> bytes:
        """The UTF-8 JSON of ``value``; `ValueNotPortableError` when it cannot travel."""
        try:
            if _orjson_dumps is not None:
                data = _orjson_dumps(value)  # NaN and infinities become null: the walk looks
                if _is_plain_json(value, check_floats=True):
                    return data
            else:
                text = _dumps_plain(value)  # refuses NaN and infinities itself
                if _is_plain_json(value, check_floats=False):
                    return text.encode()
        except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
            pass  # not plain JSON: the policy encodes it, or says why it cannot
        portable = to_portable(value, where="cached value")
        return _dumps_plain(portable).encode()

    def decode(self, data: bytes, *, key: str | None = None) -> Any:
        """The value in ``data``; `SerializationError` when it is not what `encode` writes."""
        try:
            text = bytes(data).decode()
            scan = _scan_tagged if _TAG_BYTES in data else _scan_plain
            try:
                value, end = scan(text, 0)
            except StopIteration as exc:
                raise ValueError(f"not JSON at character {exc.value}") from None
            if end != len(text):
                raise ValueError(f"extra data after the JSON value at character {end}")
        except SerializationError:
            raise
        except (ValueError, RecursionError, TypeError) as exc:
            raise SerializationError(
                f"a cached value is not JSON written by JsonCodec: {bounded_repr(str(exc), 120)}"
            ) from None
        return value


class PickleCodec:
    """Pickle, for values JSON cannot hold, and always signed: only for a cache you trust.

    Each value is stored behind an HMAC-SHA256 of its bytes and of the cache key it is stored
    under, keyed by ``secret_key`` (at least 16 bytes; every process reading the cache needs the
    same one, e.g. Django's ``SECRET_KEY``). Bytes whose signature does not match, including a
    signed value copied under another key, are refused with `SerializationError` and never
    unpickled, so whoever can write to Redis without the key cannot make a reader run code.
    """

    _SIGNATURE_BYTES = 32

    def __init__(self, secret_key: bytes | str, *, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if isinstance(secret_key, str):
            key = secret_key.encode()
        elif isinstance(secret_key, bytes | bytearray):
            key = bytes(secret_key)
        else:
            # bytes(32) would be 32 zero bytes: a key anyone can guess.
            raise ConfigurationError(
                f"PickleCodec secret_key must be bytes or str (for example Django's SECRET_KEY), "
                f"got {type(secret_key).__name__}"
            )
        if len(key) < 16:
            raise ConfigurationError(
                f"PickleCodec needs a secret_key of at least 16 bytes, shared by every process "
                f"that reads this cache (for example Django's SECRET_KEY); got {len(key)} bytes"
            )
        if not 2 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ConfigurationError(
                f"PickleCodec protocol must be 2 to {pickle.HIGHEST_PROTOCOL}, got {protocol!r}"
            )
        # A key of its own, so signatures made here are worth nothing anywhere else.
        self._key = hashlib.sha256(b"cachewire.PickleCodec\0" + key).digest()
        self.protocol = protocol
        # "-k": signatures cover the cache key, so older records (without it) are not mistaken
        # for current ones; they are recomputed.
        self.codec_id = f"pickle{protocol}-hmac-sha256-k"

    def _sign(self, data: bytes, key: str | None) -> bytes:
        signed = hmac.new(self._key, digestmod=hashlib.sha256)
        # Length-prefixed, so no (key, bytes) pair signs like another.
        where = b"" if key is None else key.encode("utf-8", "surrogatepass")
        signed.update(b"-" if key is None else b"%d:" % len(where))
        signed.update(where)
        signed.update(data)
        return signed.digest()

    def encode(self, value: Any, *, key: str | None = None) -> bytes:
        """Pickle and sign ``value`` for the cache key ``key``."""
        try:
            data = pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(
                f"value {value!r} ({type(value).__name__}) cannot be pickled: {exc}"
            ) from exc
        return self._sign(data, key) + data

    def decode(self, data: bytes, *, key: str | None = None) -> Any:
        """The value, if ``data`` is signed for ``key``; else `SerializationError`."""
        signature, body = data[: self._SIGNATURE_BYTES], data[self._SIGNATURE_BYTES :]
        if len(signature) != self._SIGNATURE_BYTES or not hmac.compare_digest(
            signature, self._sign(body, key)
        ):
            raise SerializationError(
                "a cached value's signature does not match, so it was not unpickled: it was "
                "written with another secret_key, under another key, or altered; give every "
                "process the same secret_key"
            )
        return pickle.loads(body)  # the bytes carry a valid signature of our own
