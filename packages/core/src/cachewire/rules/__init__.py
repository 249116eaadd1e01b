"""Write side: rules that turn data changes into cache invalidations."""

from __future__ import annotations

from cachewire.rules._changes import ChangeBatch, changed, collect, current_batch
from cachewire.rules._payload import (
    PAYLOAD_VERSION,
    decode_payload,
    decode_value,
    encode_payload,
    encode_value,
)
from cachewire.rules._rule import InvalidationRule, Rule, get_rule, model_label, rules_for_model

__all__ = [
    "PAYLOAD_VERSION",
    "ChangeBatch",
    "InvalidationRule",
    "Rule",
    "changed",
    "collect",
    "current_batch",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "encode_value",
    "get_rule",
    "model_label",
    "rules_for_model",
]
