"""`TaskMessage` lives in `cachewire.wire`; these names stay importable from here."""

from __future__ import annotations

from cachewire.wire import DUPLICATE_POLICIES, TaskMessage, canonical_arguments, duplicate_key

__all__ = ["DUPLICATE_POLICIES", "TaskMessage", "canonical_arguments", "duplicate_key"]
