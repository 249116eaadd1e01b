"""The names rule work had before `cachewire.wire`; kept so existing imports keep working."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cachewire.wire import (
    WIRE_VERSION,
    decode_rule_work,
    encode_rule_work,
    from_portable,
    to_portable,
)

__all__ = ["PAYLOAD_VERSION", "decode_payload", "decode_value", "encode_payload", "encode_value"]

#: The wire version rule work is written in (see `cachewire.wire.WIRE_VERSION`).
PAYLOAD_VERSION = WIRE_VERSION


def encode_value(value: Any, *, where: str = "value") -> Any:
    """The portable form of one value (`cachewire.wire.to_portable`)."""
    return to_portable(value, where=where)


def decode_value(value: Any) -> Any:
    """The value of a portable form (`cachewire.wire.from_portable`)."""
    return from_portable(value)


def encode_payload(
    rule_ids: Sequence[str],
    rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]],
    context: Mapping[str, Any] | None = None,
) -> str:
    """Envelope text for rule work: `cachewire.wire.encode_rule_work`."""
    return encode_rule_work(rule_ids, rule_kwargs, context)


def decode_payload(
    text: str | bytes,
) -> tuple[list[str], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``(rule_ids, rule_kwargs, context)`` of envelope text: `cachewire.wire.decode_rule_work`."""
    work = decode_rule_work(text)
    return list(work.rule_ids), work.rule_kwargs, work.context
