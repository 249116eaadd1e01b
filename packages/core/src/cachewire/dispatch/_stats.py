"""Counters of the write side, so lost or failed invalidations are visible."""

from __future__ import annotations

import threading
from typing import Any

import attrs

__all__ = ["DispatchStats", "dispatch_stats"]


@attrs.define
class DispatchStats:
    """Process-wide counters; `snapshot` reads them, `reset` zeroes them (tests)."""

    dispatched: int = 0
    dispatch_errors: int = 0
    invalidations: int = 0
    rule_errors: int = 0
    #: rule errors re-raised to the runtime because the policy resolved to True
    rule_errors_raised: int = 0
    unknown_rules: int = 0
    #: `changed()` calls for a model no rule knows (each model is also logged once)
    unknown_models: int = 0
    #: messages a worker entry refused (malformed, newer major version, wrong kind)
    rejected_messages: int = 0
    #: rule work run inline because its dispatcher failed and its fallback says so
    fallbacks: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, alias="_lock")

    def bump(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                f.name: getattr(self, f.name)
                for f in attrs.fields(DispatchStats)
                if not f.name.startswith("_")
            }

    def reset(self) -> None:
        with self._lock:
            for f in attrs.fields(DispatchStats):
                if not f.name.startswith("_"):
                    setattr(self, f.name, 0)


dispatch_stats = DispatchStats()
