"""The versioned envelope around everything that crosses a process.

``{"kind": "rules" | "task", "v": [major, minor], "body": {...}}`` as JSON text. A reader accepts
every minor version of its major (a newer minor may add optional fields, which it ignores) and
refuses another major with `UnsupportedVersionError`. Every malformed input raises `PayloadError`
(or a subclass), never a bare ``ValueError``, ``KeyError`` or ``RecursionError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NoReturn

import attrs

from cachewire.errors import PayloadError, UnsupportedVersionError
from cachewire.wire._values import bounded_repr

__all__ = [
    "KINDS",
    "WIRE_VERSION",
    "Envelope",
    "decode_envelope",
    "encode_envelope",
    "envelope_around",
]

#: The version this process writes; it reads every minor version of the same major.
WIRE_VERSION: Final = (1, 0)
#: What an envelope can carry.
KINDS: Final = ("rules", "task")

_FIELDS = frozenset({"kind", "v", "body"})


@attrs.frozen
class Envelope:
    """A decoded envelope: its ``kind``, the ``version`` it was written in, and its ``body``
    (JSON data; `decode_rule_work` and `TaskMessage.from_envelope` read it)."""

    kind: str
    version: tuple[int, int]
    body: dict[str, Any]

    @property
    def is_newer(self) -> bool:
        """Written by a newer minor version (which may carry fields this process ignores)."""
        return self.version > WIRE_VERSION


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in KINDS:
        raise PayloadError(f"an envelope's kind must be one of {KINDS}, got {bounded_repr(kind)}")
    return kind


_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=False)


def encode_envelope(kind: str, body: Mapping[str, Any]) -> str:
    """JSON text of an envelope of ``kind`` around ``body`` (JSON data, already portable).

    Raises `PayloadError` when ``kind`` is unknown or ``body`` is not JSON data.
    """
    _check_kind(kind)
    envelope = {"kind": kind, "v": list(WIRE_VERSION), "body": dict(body)}
    try:
        return _encoder.encode(envelope)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(
            f"the body of a {kind!r} envelope is not JSON data: {bounded_repr(exc)}"
        ) from None


_HEADS = {
    kind: _encoder.encode({"kind": kind, "v": list(WIRE_VERSION)})[:-1] + ',"body":'
    for kind in KINDS
}


def envelope_around(kind: str, body: str) -> str:
    """`encode_envelope` for a body that is already JSON text (of an object); the caller vouches
    for the text."""
    return _HEADS[_check_kind(kind)] + body + "}"


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)


def _parse(raw: str | bytes | bytearray) -> Any:
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise PayloadError(
                "a message is not UTF-8 text, so it is no cachewire envelope"
            ) from None
    elif not isinstance(raw, str):
        raise PayloadError(
            f"a message must be str or bytes, got {type(raw).__name__}: {bounded_repr(raw)}"
        )
    try:
        return _decoder.decode(raw)
    except ValueError as exc:  # json.JSONDecodeError, or an integer too long to read
        raise PayloadError(
            f"a message is not JSON ({bounded_repr(str(exc), 100)}): {bounded_repr(raw)}"
        ) from None
    except RecursionError:
        raise PayloadError("a message nests too deeply to be read") from None


def _version(raw: object) -> tuple[int, int]:
    if (
        type(raw) is not list
        or len(raw) != 2
        or not all(type(part) is int and 0 <= part < 2**31 for part in raw)
    ):
        raise PayloadError(
            f"a message of wire version {bounded_repr(raw)} cannot be read: this cachewire "
            f"reads [major, minor] versions of major {WIRE_VERSION[0]}"
        )
    major, minor = raw
    if major != WIRE_VERSION[0]:
        hint = (
            "upgrade the workers to the release of the producers"
            if major > WIRE_VERSION[0]
            else "the producer runs an older release: upgrade it"
        )
        raise UnsupportedVersionError(
            f"a message of wire version {major}.{minor} cannot be read by this process (which "
            f"reads {WIRE_VERSION[0]}.x): {hint}"
        )
    return major, minor


def decode_envelope(raw: str | bytes | bytearray) -> Envelope:
    """The envelope in ``raw``; `PayloadError` for anything that is not one, and
    `UnsupportedVersionError` for another major version."""
    data = _parse(raw)
    if type(data) is not dict:
        raise PayloadError(f"a message must be a JSON object, got {bounded_repr(raw)}")
    if "v" not in data:
        raise PayloadError(
            "a message has no wire version: it is not a cachewire envelope (or was written by "
            f"cachewire 0.1, whose messages are not read any more): {bounded_repr(raw)}"
        )
    version = _version(data["v"])
    newer = version > WIRE_VERSION
    if not newer and not data.keys() <= _FIELDS:
        unknown = sorted(data.keys() - _FIELDS)
        raise PayloadError(f"an envelope has unknown fields {bounded_repr(unknown)}")
    kind = _check_kind(data.get("kind"))
    body = data.get("body")
    if type(body) is not dict:
        raise PayloadError(
            f"a {kind!r} envelope's body must be an object, got {bounded_repr(body)}"
        )
    return Envelope(kind=kind, version=version, body=body)


def check_body(envelope: Envelope, *, required: frozenset[str], optional: frozenset[str]) -> None:
    """Refuse a body that lacks a required field, or (unless written by a newer minor version)
    has a field outside ``required | optional``."""
    keys = envelope.body.keys()
    missing = sorted(required - keys)
    if missing:
        raise PayloadError(f"a {envelope.kind!r} message lacks the fields {missing}")
    if not envelope.is_newer:
        unknown = sorted(keys - required - optional)
        if unknown:
            raise PayloadError(
                f"a {envelope.kind!r} message has unknown fields {bounded_repr(unknown)}"
            )
