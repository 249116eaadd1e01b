"""Unambiguous cache keys: distinct argument sets never share a key, and no glob characters,
white space or control characters reach a backend.

Argument values follow the one value policy (`cachewire.wire`, docs/values.md), so a value that
makes a key also travels to a worker and makes the same key there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cachewire.wire import escape, key_fragment

__all__ = ["MAX_KEY_LENGTH", "encode_key", "encode_value", "escape"]

MAX_KEY_LENGTH = 200


def encode_value(value: Any, *, where: str = "argument") -> str:
    """A canonical, type-tagged encoding of one argument value; `ValueNotPortableError` naming
    ``where`` when it is outside the value policy."""
    return key_fragment(value, where=where)


def _by_name(item: tuple[str, Any]) -> str:
    return item[0]


def encode_key(prefix: str, arguments: Mapping[str, Any]) -> str:
    """``prefix`` plus the encoded arguments; long keys keep a digest of the full encoding.

    Equal mappings give equal keys whatever their order.
    """
    body = "".join(
        escape(name) + "=" + key_fragment(value, where=f"{prefix} argument {name!r}")
        for name, value in sorted(arguments.items(), key=_by_name)
    )
    key = f"{escape(prefix)}|{body}"
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(body.encode()).hexdigest()
        key = f"{escape(prefix)}|h{digest}"
    return key
