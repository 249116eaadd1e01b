"""Rule work on the wire: rule ids and the argument sets to invalidate. Never pickles."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cachewire.errors import PayloadError
from cachewire.wire._envelope import Envelope, decode_envelope, encode_envelope

__all__ = ["RuleWork", "decode_rule_work", "decode_value", "encode_rule_work", "encode_value"]

_TAG = "__cw__"


def encode_value(value: Any, *, where: str = "value") -> Any:
    """A JSON-safe form of one argument; raises `PayloadError` naming ``where`` if impossible."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {_TAG: "float", "v": repr(value)}
        return value
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [encode_value(v, where=where) for v in value]}
    if isinstance(value, list):
        return [encode_value(v, where=where) for v in value]
    raise PayloadError(
        f"{where} = {value!r} ({type(value).__name__}) cannot travel in a rule payload; map the "
        "rule to an attribute holding an int, str, float, bool, None, UUID, Decimal, date, time, "
        "datetime, or a list/tuple of those"
    )


_DECODERS: dict[str, Any] = {
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "float": float,
}
_PLAIN = frozenset({int, str, bool, type(None)})


def decode_value(value: Any) -> Any:
    """The inverse of `encode_value`."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag, raw = value.get(_TAG), value.get("v")
    if tag == "tuple":
        return tuple(decode_value(v) for v in raw or ())
    decoder = _DECODERS.get(tag)  # type: ignore[arg-type]
    if decoder is not None:
        return decoder(raw)
    raise PayloadError(f"unknown value tag {tag!r} in a rule payload")


def _encode_argument(value: Any, rule_id: str, name: str) -> Any:
    if type(value) in _PLAIN:
        return value
    return encode_value(value, where=f"rule {rule_id!r} argument {name!r}")


@attrs.frozen
class RuleWork:
    """Decoded rule work: which rules, the argument sets of each, and where it came from."""

    rule_ids: list[str]
    rule_kwargs: dict[str, list[dict[str, Any]]]
    context: dict[str, Any] = attrs.field(factory=dict)


def encode_rule_work(
    rule_ids: Sequence[str],
    rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]],
    context: Mapping[str, Any] | None = None,
) -> str:
    """The envelope (kind ``rules``) for rule ids and their argument sets."""
    body = {
        "rule_ids": list(rule_ids),
        "rule_kwargs": {
            rule_id: [
                {name: _encode_argument(value, rule_id, name) for name, value in kwargs.items()}
                for kwargs in rule_kwargs.get(rule_id, ())
            ]
            for rule_id in rule_ids
        },
        "context": {
            key: encode_value(value, where=f"context {key!r}")
            for key, value in (context or {}).items()
        },
    }
    return encode_envelope("rules", body)


def decode_rule_work(raw: str | bytes | Envelope) -> RuleWork:
    """The `RuleWork` in an envelope of kind ``rules``; `PayloadError` for anything else."""
    envelope = raw if isinstance(raw, Envelope) else decode_envelope(raw)
    if envelope.kind != "rules":
        raise PayloadError(f"expected rule work, got a {envelope.kind!r} message")
    body = envelope.body
    try:
        rule_ids = body["rule_ids"]
        sets = body["rule_kwargs"]
        context = body.get("context", {})
        if not (
            isinstance(rule_ids, list)
            and all(isinstance(r, str) for r in rule_ids)
            and isinstance(sets, dict)
            and isinstance(context, dict)
        ):
            raise TypeError("rule_ids must be a list of str, rule_kwargs and context objects")
        rule_kwargs = {
            str(rule_id): [{str(k): decode_value(v) for k, v in kw.items()} for kw in kwsets]
            for rule_id, kwsets in sets.items()
        }
        decoded_context = {str(k): decode_value(v) for k, v in context.items()}
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise PayloadError(f"malformed rule work: {exc!r}") from None
    return RuleWork(rule_ids=list(rule_ids), rule_kwargs=rule_kwargs, context=decoded_context)
