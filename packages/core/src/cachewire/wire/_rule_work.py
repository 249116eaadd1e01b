"""Rule work on the wire: which rules to run, with which argument sets (kind ``"rules"``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cachewire.errors import PayloadError
from cachewire.wire._envelope import Envelope, check_body, decode_envelope, encode_envelope
from cachewire.wire._portable import (
    from_portable_arguments,
    to_portable_arguments,
)
from cachewire.wire._values import bounded_repr

__all__ = ["RuleWork", "decode_rule_work", "encode_rule_work"]

_REQUIRED = frozenset({"rule_ids", "rule_kwargs"})
_OPTIONAL = frozenset({"context"})


@attrs.frozen
class RuleWork:
    """Decoded rule work: the rule ids in order, each one's argument sets, and the context the
    producer sent (for example the origin of the change)."""

    rule_ids: list[str]
    rule_kwargs: dict[str, list[dict[str, Any]]]
    context: dict[str, Any] = attrs.field(factory=dict)


def _encode_arguments(rule_id: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return to_portable_arguments(kwargs, where=f"rule {rule_id!r} argument")


def encode_rule_work(
    rule_ids: Sequence[str],
    rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]],
    context: Mapping[str, Any] | None = None,
) -> str:
    """Envelope text (kind ``"rules"``) for rule ids and their argument sets.

    Raises `ValueNotPortableError` naming the rule and argument when a value cannot travel.
    """
    ids = list(rule_ids)
    for rule_id in ids:
        if not isinstance(rule_id, str):
            raise PayloadError(f"rule ids must be str, got {bounded_repr(rule_id)}")
    body = {
        "rule_ids": ids,
        "rule_kwargs": {
            rule_id: [_encode_arguments(rule_id, kwargs) for kwargs in rule_kwargs.get(rule_id, ())]
            for rule_id in ids
        },
        "context": to_portable_arguments(context or {}, where="context"),
    }
    return encode_envelope("rules", body)


def _decode_sets(rule_id: str, sets: Any) -> list[dict[str, Any]]:
    if type(sets) is not list:
        raise PayloadError(f"rule {rule_id!r}: its argument sets must be a list")
    decoded = []
    for kwargs in sets:
        if type(kwargs) is not dict:
            raise PayloadError(f"rule {rule_id!r}: an argument set must be an object")
        decoded.append(from_portable_arguments(kwargs, where=f"rule {rule_id!r} argument"))
    return decoded


def decode_rule_work(raw: str | bytes | bytearray | Envelope) -> RuleWork:
    """The rule work in envelope text (or an already decoded `Envelope`).

    Raises `PayloadError` (or a subclass) for anything malformed, another kind, or another
    major version.
    """
    envelope = raw if isinstance(raw, Envelope) else decode_envelope(raw)
    if envelope.kind != "rules":
        raise PayloadError(f"expected rule work, got a {envelope.kind!r} message")
    check_body(envelope, required=_REQUIRED, optional=_OPTIONAL)
    body = envelope.body
    rule_ids = body["rule_ids"]
    if type(rule_ids) is not list or not all(type(r) is str for r in rule_ids):
        raise PayloadError(f"rule work's rule_ids must be a list of str: {bounded_repr(rule_ids)}")
    by_rule = body["rule_kwargs"]
    if type(by_rule) is not dict:
        raise PayloadError("rule work's rule_kwargs must be an object")
    strays = sorted(by_rule.keys() - set(rule_ids))
    if strays:
        raise PayloadError(f"rule work has arguments for rules it does not list: {strays!r}")
    context = body.get("context", {})
    if type(context) is not dict:
        raise PayloadError("rule work's context must be an object")
    return RuleWork(
        rule_ids=list(rule_ids),
        rule_kwargs={rule_id: _decode_sets(rule_id, sets) for rule_id, sets in by_rule.items()},
        context=from_portable_arguments(context, where="context"),
    )
