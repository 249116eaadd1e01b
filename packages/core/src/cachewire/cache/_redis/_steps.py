"""The steps a miss is made of: what the core asks its driver to do, and how a driver runs them."""

from __future__ import annotations

import random
from collections.abc import Generator, Iterator
from typing import Any

import attrs

from cachewire.cache._base import Creator
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
    script: Script
    keys: list[str]
    args: list[Any]


@attrs.frozen
class Pause:
    """Wait until ``lock_key`` is announced (or any tag bump), or for the backoff of the
    ``attempt``-th pause of this wait (see `backoff`)."""

    lock_key: str
    attempt: int


def backoff(attempt: int, first: float, longest: float) -> float:
    """The pause before looking again: ``first`` doubling up to ``longest``, jittered down by up
    to half so waiters of one lease do not look all at once."""
    return float(min(first * 2 ** min(attempt, 30), longest)) * (0.5 + random.random() / 2)


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


Steps = Generator[Any, Any, Any]


class Run:
    """Runs steps for a driver: iterate for the next step, hand back its outcome with `reply`
    or `fail`; once the iteration ends, `value` holds what the steps returned (or they raised).
    """

    __slots__ = ("_error", "_reply", "_steps", "value")

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self._reply: Any = None
        self._error: BaseException | None = None
        self.value: Any = None

    def __iter__(self) -> Iterator[Any]:
        while True:
            reply, error, self._reply, self._error = self._reply, self._error, None, None
            try:
                step = self._steps.send(reply) if error is None else self._steps.throw(error)
            except StopIteration as done:
                self.value = done.value
                return
            yield step

    def reply(self, value: Any) -> None:
        self._reply = value

    def fail(self, error: BaseException) -> None:
        self._error = error
