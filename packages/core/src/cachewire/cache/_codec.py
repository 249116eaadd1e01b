"""Codecs turn cached values into bytes for a remote backend. JSON is strict by default."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import pickle
from collections.abc import Callable
from typing import Any, Protocol

from cachewire.errors import ConfigurationError, SerializationError

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


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SerializationError(f"{path} = {value!r} is not valid JSON")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path} has the key {key!r} ({type(key).__name__}); JSON keys come back as "
                    "str, so a cache hit would differ from the miss: use str keys"
                )
            _check(item, f"{path}[{key!r}]")
        return
    raise SerializationError(
        f"{path} = {value!r} ({type(value).__name__}) would not come back from JSON as the same "
        "value; convert it (tuples to lists, datetimes to strings, ...) or use another codec"
    )


_json_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner


class JsonCodec:
    """Strict JSON: only values that round-trip unchanged (dict with str keys, list, str, int,
    float, bool, None). Anything else raises `SerializationError` before it is stored."""

    codec_id = "json1"

    def encode(self, value: Any) -> bytes:
        _check(value, "value")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        text = data.decode()
        try:
            value, end = _json_scan(text, 0)
        except StopIteration as exc:
            raise ValueError(f"not JSON at character {exc.value}") from None
        if end != len(text):
            raise ValueError(f"extra data after the JSON value at character {end}")
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
