"""The ``CACHEWIRE_QUEUE`` Django setting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from django.conf import settings

from cachewire import RetryPolicy
from cachewire.errors import ConfigurationError

DEFAULTS: Mapping[str, Any] = {
    # Callables under these module prefixes may be scheduled without being registered tasks.
    "ALLOWED_MODULES": (),
    # Seconds a claimed job is held; a worker renews it while the job runs.
    "LEASE_SECONDS": 60.0,
    # How often a worker looks for due jobs when nothing wakes it (LISTEN/NOTIFY on PostgreSQL).
    "POLL_SECONDS": 1.0,
    # Seconds between the cooperative cancel of a job past its timeout and killing its process.
    "KILL_GRACE_SECONDS": 5.0,
    # Due jobs a worker claims at once (one lease, renewed together).
    "CLAIM_BATCH": 20,
    "MAX_ATTEMPTS": 5,
    "RETRY_BASE_DELAY": 2.0,
    "RETRY_MAX_DELAY": 600.0,
}


@attrs.frozen
class QueueSettings:
    allowed_modules: tuple[str, ...]
    lease_seconds: float
    poll_seconds: float
    kill_grace_seconds: float
    claim_batch: int
    retry: RetryPolicy


def _batch(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError("CACHEWIRE_QUEUE['CLAIM_BATCH'] must be an int >= 1")
    return value


def current() -> QueueSettings:
    """``CACHEWIRE_QUEUE`` as read now (so ``override_settings`` works)."""
    block = getattr(settings, "CACHEWIRE_QUEUE", None) or {}
    if not isinstance(block, Mapping):
        raise ConfigurationError("CACHEWIRE_QUEUE must be a mapping")
    unknown = sorted(set(block) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"CACHEWIRE_QUEUE has unknown key(s) {unknown}; known: {sorted(DEFAULTS)}"
        )
    values = {**DEFAULTS, **block}
    for key in ("LEASE_SECONDS", "POLL_SECONDS", "KILL_GRACE_SECONDS"):
        if not isinstance(values[key], int | float) or values[key] <= 0:
            raise ConfigurationError(f"CACHEWIRE_QUEUE[{key!r}] must be a number of seconds > 0")
    return QueueSettings(
        allowed_modules=tuple(values["ALLOWED_MODULES"]),
        lease_seconds=float(values["LEASE_SECONDS"]),
        poll_seconds=float(values["POLL_SECONDS"]),
        kill_grace_seconds=float(values["KILL_GRACE_SECONDS"]),
        claim_batch=_batch(values["CLAIM_BATCH"]),
        retry=RetryPolicy(
            max_attempts=int(values["MAX_ATTEMPTS"]),
            base_delay=float(values["RETRY_BASE_DELAY"]),
            max_delay=float(values["RETRY_MAX_DELAY"]),
        ),
    )
