"""Rule work on the wire: which rules to run, with which argument sets (kind ``"rules"``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

import attrs

from cachewire.errors import PayloadError
from cachewire.wire._envelope import (
    Envelope,
    check_body,
    decode_envelope,
    envelope_around,
)
from cachewire.wire._portable import (
    from_portable_arguments,
    to_portable_arguments,
)
from cachewire.wire._values import INT_LIMIT, bounded_repr

__all__ = [
    "RuleWork",
    "WireArguments",
    "decode_rule_work",
    "encode_arguments",
    "encode_rule_work",
]

_INT_LOW = -INT_LIMIT  # negated once, not on every check
_REQUIRED = frozenset({"rule_ids", "rule_kwargs"})
_OPTIONAL = frozenset({"context"})


@attrs.frozen
class RuleWork:
    """Decoded rule work: the rule ids in order, each one's argument sets, and the context the
    producer sent (for example the origin of the change)."""

    rule_ids: list[str]
    rule_kwargs: dict[str, list[dict[str, Any]]]
    context: dict[str, Any] = attrs.field(factory=dict)


# Sorted names: the text of equal argument sets is the same whatever order they were given in.
_arguments_encoder = json.JSONEncoder(
    allow_nan=False, separators=(",", ":"), check_circular=False, sort_keys=True
)


def _plain_text(arguments: Mapping[str, Any]) -> str | None:
    """The JSON text (names sorted) of arguments that travel as they are, the commonest case,
    written without the encoder: ASCII str names; ASCII str, bool, None, int within the limit or
    finite float values. None when anything else is there (the portable form is needed)."""
    names: Any = arguments
    if len(arguments) > 1:
        try:
            names = sorted(arguments)
        except TypeError:  # names that are not all str: refused on the other path
            return None
    items = []
    for name in names:
        if type(name) is not str or not name.isascii():
            return None
        value = arguments[name]
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return None
            text = encode_basestring_ascii(value)
        elif kind is int:
            if not _INT_LOW < value < INT_LIMIT:
                return None
            text = int.__repr__(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif kind is float and math.isfinite(value):
            text = float.__repr__(value)
        else:
            return None
        items.append(f"{encode_basestring_ascii(name)}:{text}")
    return "{" + ",".join(items) + "}"


def encode_arguments(arguments: Mapping[str, Any], *, rule_id: str) -> str:
    """The wire text of one argument set of rule ``rule_id`` (a JSON object, names sorted).

    Equal texts stand for equal values of the same types (``1``, ``1.0`` and ``True`` differ), so
    the text also tells identical invalidations apart. Raises `ValueNotPortableError` naming the
    rule and argument when a value cannot travel.
    """
    if type(arguments) is WireArguments:
        return arguments.wire
    text = _plain_text(arguments)
    if text is not None:
        return text
    portable = to_portable_arguments(arguments, where=f"rule {rule_id!r} argument")
    return _arguments_encoder.encode(portable)


class WireArguments(dict[str, Any]):
    """An argument set together with its wire text, encoded once: `encode_rule_work` puts the
    text in the message as it is. Build it with `WireArguments.encode`; do not change it after."""

    __slots__ = ("wire",)

    wire: str

    @classmethod
    def encode(cls, arguments: Mapping[str, Any], *, rule_id: str) -> WireArguments:
        """``arguments`` with their wire text (as they are when they have it already); raises
        like `encode_arguments`."""
        if type(arguments) is cls:
            return arguments
        encoded = cls(arguments)
        encoded.wire = encode_arguments(arguments, rule_id=rule_id)
        return encoded


def encode_rule_work(
    rule_ids: Sequence[str],
    rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]],
    context: Mapping[str, Any] | None = None,
) -> str:
    """Envelope text (kind ``"rules"``) for rule ids and their argument sets.

    Argument sets given as `WireArguments` travel as their text. Raises `ValueNotPortableError`
    naming the rule and argument when a value cannot travel.
    """
    ids = list(rule_ids)
    for rule_id in ids:
        if not isinstance(rule_id, str):
            raise PayloadError(f"rule ids must be str, got {bounded_repr(rule_id)}")
    # Each argument set is encoded once (`WireArguments` already are), then the body is put
    # together as text.
    by_rule = []
    for rule_id in dict.fromkeys(ids):
        texts = [
            encode_arguments(kwargs, rule_id=rule_id) for kwargs in rule_kwargs.get(rule_id, ())
        ]
        by_rule.append(f"{encode_basestring_ascii(rule_id)}:[{','.join(texts)}]")
    wire_context = (
        _arguments_encoder.encode(to_portable_arguments(context, where="context"))
        if context
        else "{}"
    )
    body = (
        f'{{"rule_ids":[{",".join(map(encode_basestring_ascii, ids))}],'
        f'"rule_kwargs":{{{",".join(by_rule)}}},"context":{wire_context}}}'
    )
    return envelope_around("rules", body)


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
