"""The Redis adapter's stored format: records, read-script replies, and the Lua scripts."""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Sequence

import attrs

__all__ = [
    "BUMP",
    "EXTEND",
    "INVALIDATE",
    "MAX_DIGITS",
    "READ",
    "RELEASE",
    "SCRIPTS",
    "WRITE",
    "Read",
    "Record",
    "Script",
    "join_versions",
    "parse_record",
    "parse_reply",
]

MAX_DIGITS = 15  # soft expiry and creator time: milliseconds, exact in a double


@attrs.frozen
class Script:
    """A Lua script shipped with the package, run by its SHA1 (loaded once per server)."""

    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> Script:
        source = (
            importlib.resources.files("cachewire.cache._redis")
            .joinpath("scripts", f"{name}.lua")
            .read_text(encoding="utf-8")
        )
        return cls(name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


_NAMES = ("read", "write", "extend", "release", "invalidate", "bump")
SCRIPTS = {name: Script.load(name) for name in _NAMES}
READ, WRITE, EXTEND, RELEASE, INVALIDATE, BUMP = (SCRIPTS[n] for n in _NAMES)


@attrs.frozen
class Record:
    """A stored value, as five fields on lines of their own.

    ``<soft expiry, server ms; 0 = none>``, ``<creator ms>``, ``<codec id>``, ``<tag versions>``,
    ``<payload>``; Redis drops it ``stale_ttl`` after the soft expiry.
    """

    soft_ms: int
    creator_ms: int
    codec: bytes
    versions: bytes
    payload: bytes


def _number(text: bytes) -> int | None:
    # Strict: ASCII digits only (no sign, space, tab or underscore), short enough to be exact.
    if 0 < len(text) <= MAX_DIGITS and text.isdigit():
        return int(text)
    return None


def parse_record(raw: bytes) -> Record | None:
    """The record in ``raw``, or None when it is damaged or of another format (then replaced)."""
    parts = raw.split(b"\n", 4)
    if len(parts) != 5:
        return None
    soft, took = _number(parts[0]), _number(parts[1])
    if soft is None or took is None:
        return None
    return Record(soft, took, parts[2], parts[3], parts[4])


@attrs.frozen
class Read:
    """What the read script found when it was not a plain hit."""

    state: str  # "m" miss, "s" stale, "e" due for an early refresh
    won: bool
    epoch: bytes
    versions: bytes
    record: bytes


def parse_reply(reply: bytes) -> Read | bytes:
    """A fresh record as stored, or what the read script found otherwise."""
    if reply[:1].isdigit():
        return reply
    head, epoch, versions, record = reply.split(b"\n", 3)
    return Read(chr(head[0]), head[1:2] == b"1", epoch, versions, record)


def join_versions(found: Sequence[bytes | None]) -> bytes:
    return b",".join(version or b"0" for version in found)


# ------------------------------------------------------------ steps (I/O to perform)
