"""Counters every cache adapter keeps."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["CacheStats"]


@attrs.define
class CacheStats:
    """Plain integer counters; adapters bump them, `as_dict` reports them.

    A miss is counted when the creator is invoked, even if it then fails.
    """

    hits: int = 0
    misses: int = 0
    stale_hits: int = 0
    early_refreshes: int = 0
    coalesced: int = 0
    creator_calls: int = 0
    creator_errors: int = 0
    creator_time_total: float = 0.0
    lock_waits: int = 0
    lock_wait_time: float = 0.0
    lock_lost: int = 0
    evictions: int = 0
    backend_errors: int = 0
    breaker_opens: int = 0
    writes_rejected: int = 0
    decode_errors: int = 0

    def as_dict(self, *, size: int | None, keys: list[str] | None) -> dict[str, Any]:
        total = self.hits + self.misses
        report: dict[str, Any] = attrs.asdict(self)
        report["hit_rate"] = self.hits / total if total else 0.0
        report["size"] = size
        report["keys"] = keys
        return report

    def reset(self) -> None:
        for field in attrs.fields(CacheStats):
            setattr(self, field.name, field.default)
