"""The wire: which values can travel and the versioned messages that carry them between
processes. The bottom layer of cachewire: it imports nothing of the rest."""

from __future__ import annotations

from cachewire.wire._envelope import (
    KINDS,
    WIRE_VERSION,
    Envelope,
    decode_envelope,
    encode_envelope,
)
from cachewire.wire._rule_work import (
    RuleWork,
    decode_rule_work,
    decode_value,
    encode_rule_work,
    encode_value,
)
from cachewire.wire._task_message import (
    DUPLICATE_POLICIES,
    TaskMessage,
    canonical_arguments,
    duplicate_key,
)

__all__ = [
    "DUPLICATE_POLICIES",
    "KINDS",
    "WIRE_VERSION",
    "Envelope",
    "RuleWork",
    "TaskMessage",
    "canonical_arguments",
    "decode_envelope",
    "decode_rule_work",
    "decode_value",
    "duplicate_key",
    "encode_envelope",
    "encode_rule_work",
    "encode_value",
]
