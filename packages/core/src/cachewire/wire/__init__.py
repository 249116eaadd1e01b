"""The wire: the one policy of which values can travel, and the versioned envelope around
everything that crosses a process (rule work and task messages).

The bottom layer of cachewire: it imports nothing of cachewire but `cachewire.errors`.
"""

from __future__ import annotations

from cachewire.wire._envelope import (
    KINDS,
    WIRE_VERSION,
    Envelope,
    decode_envelope,
    encode_envelope,
)
from cachewire.wire._keys import escape, key_fragment
from cachewire.wire._portable import (
    decode_value,
    encode_value,
    from_portable,
    from_portable_arguments,
    to_portable,
    to_portable_arguments,
)
from cachewire.wire._rule_work import (
    RuleWork,
    WireArguments,
    decode_rule_work,
    encode_arguments,
    encode_rule_work,
)
from cachewire.wire._tags import decode_tagged
from cachewire.wire._task_message import (
    DUPLICATE_POLICIES,
    TaskMessage,
    canonical_arguments,
    duplicate_key,
)
from cachewire.wire._values import MAX_DEPTH, MAX_INT_DIGITS, REPR_LIMIT, TAG, bounded_repr

__all__ = [
    "DUPLICATE_POLICIES",
    "KINDS",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "REPR_LIMIT",
    "TAG",
    "WIRE_VERSION",
    "Envelope",
    "RuleWork",
    "TaskMessage",
    "WireArguments",
    "bounded_repr",
    "canonical_arguments",
    "decode_envelope",
    "decode_rule_work",
    "decode_tagged",
    "decode_value",
    "duplicate_key",
    "encode_arguments",
    "encode_envelope",
    "encode_rule_work",
    "encode_value",
    "escape",
    "from_portable",
    "from_portable_arguments",
    "key_fragment",
    "to_portable",
    "to_portable_arguments",
]
