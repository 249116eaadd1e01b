"""Codecs turn cached values into bytes for a remote backend. JSON is strict by default."""

from __future__ import annotations

import json
from typing import Any, Protocol

from cachewire.errors import SerializationError

__all__ = ["Codec", "JsonCodec"]


class Codec(Protocol):
    """Encodes values so that decoding gives back an equal value, or raises."""

    codec_id: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


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


class JsonCodec:
    """Strict JSON: only values that round-trip unchanged (dict with str keys, list, str, int,
    float, bool, None). Anything else raises `SerializationError` before it is stored."""

    codec_id = "json1"

    def encode(self, value: Any) -> bytes:
        _check(value, "value")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)
