"""The one envelope every message that crosses a process travels in: kind, version, body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from cachewire.errors import PayloadError, UnsupportedVersionError

__all__ = ["KINDS", "WIRE_VERSION", "Envelope", "decode_envelope", "encode_envelope"]

#: (major, minor): a newer minor only adds optional fields; a newer major is refused.
WIRE_VERSION = (1, 0)
KINDS = ("rules", "task")


@attrs.frozen
class Envelope:
    """A decoded message: what it carries (``kind``), the version it was written with and its
    body (a JSON object)."""

    kind: str
    version: tuple[int, int]
    body: Mapping[str, Any]


def encode_envelope(kind: str, body: Mapping[str, Any]) -> str:
    """JSON text of one message of ``kind`` (one of `KINDS`)."""
    if kind not in KINDS:
        raise PayloadError(f"unknown message kind {kind!r}; expected one of {KINDS}")
    return json.dumps(
        {"kind": kind, "v": list(WIRE_VERSION), "body": body},
        separators=(",", ":"),
        sort_keys=True,
        allow_nan=False,
    )


def _preview(raw: str | bytes | bytearray) -> str:
    text = repr(raw)
    return text if len(text) <= 120 else f"{text[:117]}..."


def decode_envelope(raw: str | bytes | bytearray) -> Envelope:
    """The envelope in ``raw``; `PayloadError` for anything else, `UnsupportedVersionError` for a
    newer major version."""
    if not isinstance(raw, str | bytes | bytearray):
        raise PayloadError(f"a message body must be str or bytes, not {type(raw).__name__}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"a message is not JSON ({exc}): {_preview(raw)}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"a message must be a JSON object: {_preview(raw)}")
    kind, version, body = data.get("kind"), data.get("v"), data.get("body")
    if (
        not isinstance(version, list)
        or len(version) != 2
        or not all(type(part) is int and part >= 0 for part in version)
    ):
        raise PayloadError(
            f"a message has no valid version (got {version!r}); producers and workers must run "
            f"cachewire 0.2 or later: {_preview(raw)}"
        )
    major, minor = version
    if major != WIRE_VERSION[0]:
        raise UnsupportedVersionError(
            f"a message of wire version {major}.{minor} cannot be read by this worker (it reads "
            f"{WIRE_VERSION[0]}.x); upgrade the workers and producers to one release"
        )
    if kind not in KINDS:
        raise PayloadError(f"a message has an unknown kind {kind!r}: {_preview(raw)}")
    if not isinstance(body, dict):
        raise PayloadError(f"a {kind} message has no body object: {_preview(raw)}")
    return Envelope(kind=kind, version=(major, minor), body=body)
