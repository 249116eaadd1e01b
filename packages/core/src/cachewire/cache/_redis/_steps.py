"""The steps a miss is made of: what the core asks its driver to do, and how a driver runs them."""

from __future__ import annotations

from typing import Any

import attrs

from cachewire.cache._base import Creator
from cachewire.cache._flight import StepRun as Run
from cachewire.cache._flight import Steps, backoff
from cachewire.cache._redis._record import Read, Script

__all__ = [
    "Call",
    "Compute",
    "Eval",
    "Heartbeat",
    "Pause",
    "Refresh",
    "Run",
    "Steps",
    "backoff",
]


@attrs.frozen
class Eval:
    """Run ``script``; with ``stage`` (key, bytes, ms), first SET that key to those bytes with
    that expiry, in the same round trip."""

    script: Script
    keys: list[str]
    args: list[Any]
    stage: tuple[str, bytes, int] | None = None


@attrs.frozen
class Pause:
    """Wait until ``lock_key`` is announced (or any tag bump), or for the backoff of the
    ``attempt``-th pause of this wait (see `backoff`)."""

    lock_key: str
    attempt: int


@attrs.frozen
class Compute:
    """Run the creator; the reply is (value, creator milliseconds)."""

    key: str
    creator: Creator


@attrs.frozen
class Heartbeat:
    """Start (``stop=None``) or stop a heartbeat extending a lease; the reply is its handle."""

    keys: list[str]
    token: str
    stop: Any = None


@attrs.define(slots=True)
class Call:
    """One get_or_create that found no fresh value."""

    key: str
    creator: Creator
    keys: list[str]  # value, lease, epoch, tags...
    ttl: float | None
    ttl_ms: int
    stale_ttl: float | None


@attrs.frozen
class Refresh:
    """A lease this caller took while being answered with an older value: refresh it after."""

    call: Call
    token: str
    read: Read
