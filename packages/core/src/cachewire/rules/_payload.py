"""The versioned JSON payload that carries rule work to workers. Never pickles."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cachewire.errors import PayloadError

__all__ = ["PAYLOAD_VERSION", "decode_payload", "decode_value", "encode_payload", "encode_value"]

PAYLOAD_VERSION = 1
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


def encode_payload(
    rule_ids: Sequence[str],
    rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]],
    context: Mapping[str, Any] | None = None,
) -> str:
    """Versioned JSON text for rule ids and their argument sets."""
    body = {
        "v": PAYLOAD_VERSION,
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
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def decode_payload(
    text: str | bytes,
) -> tuple[list[str], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``(rule_ids, rule_kwargs, context)`` from `encode_payload` text, or `PayloadError`."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"a rule payload is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("v") != PAYLOAD_VERSION:
        version = body.get("v") if isinstance(body, dict) else None
        raise PayloadError(
            f"rule payload version {version!r} is not supported (this cachewire reads version "
            f"{PAYLOAD_VERSION}); upgrade the workers and producers to the same release"
        )
    rule_ids = [str(r) for r in body["rule_ids"]]
    rule_kwargs = {
        rule_id: [{k: decode_value(v) for k, v in kw.items()} for kw in sets]
        for rule_id, sets in body["rule_kwargs"].items()
    }
    context = {k: decode_value(v) for k, v in body.get("context", {}).items()}
    return rule_ids, rule_kwargs, context
