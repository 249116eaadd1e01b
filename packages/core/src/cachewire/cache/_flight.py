"""What every stampede-safe adapter does the same way, whatever it stores values in.

Re-entry detection (a creator asking for its own key), the creator's accounting, XFetch early
refresh, TTL jitter, the backoff of a caller waiting for another process's lease, a table of the
computations (or reads) in flight per key that an invalidation detaches, so that callers arriving
after it start afresh, and `StepRun`, which lets an adapter write each operation once as a
generator of the I/O it needs and drive it from its async adapter and its blocking twin alike.

These names are public in `cachewire.cache` for adapters built outside the core.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import random
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterator
from typing import Any, Generic, Protocol, TypeVar

from cachewire.cache._stats import CacheStats
from cachewire.errors import ConfigurationError, ReentrantCallError

__all__ = [
    "COMPUTING",
    "CreatorRun",
    "FlightTable",
    "StepRun",
    "Steps",
    "backoff",
    "call_creator",
    "check_reentry",
    "check_refresh_options",
    "early_refresh_draw",
    "is_due_early",
    "jittered",
    "refresh_in_background",
]

#: (adapter id, key) pairs whose creator runs in the current task or thread.
_computing: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "cachewire_computing", default=frozenset()
)


#: Public alias: a caller may skip `check_reentry` when this holds nothing (the common case).
COMPUTING = _computing


def check_reentry(owner: object, key: str) -> None:
    """Raise `ReentrantCallError` if the caller is inside the creator of ``key`` on ``owner``."""
    if (id(owner), key) in _computing.get():
        raise ReentrantCallError(
            f"the creator of cache key {key!r} asked the cache for that same key; "
            "it would wait for itself forever"
        )


class CreatorRun:
    """One creator call: marks the key as being computed here, and counts it in ``stats``.

    ``finish`` returns how long the creator ran, in seconds.
    """

    __slots__ = ("_started", "_stats", "_token", "elapsed")

    def __init__(self, owner: object, key: str, stats: CacheStats) -> None:
        stats.misses += 1
        stats.creator_calls += 1
        self._stats = stats
        self._token = _computing.set(_computing.get() | {(id(owner), key)})
        self._started = time.monotonic()
        self.elapsed = 0.0

    @property
    def ms(self) -> int:
        """How long the finished creator ran, in whole milliseconds."""
        return round(self.elapsed * 1000)

    def __enter__(self) -> CreatorRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.finish(failed=kind is not None)

    def finish(self, *, failed: bool) -> float:
        # Finished in another context than it started (a task's copy): nothing to undo there.
        with contextlib.suppress(ValueError):
            _computing.reset(self._token)
        self.elapsed = elapsed = time.monotonic() - self._started
        self._stats.creator_time_total += elapsed
        if failed:
            self._stats.creator_errors += 1
        return elapsed


def call_creator(creator: Callable[[], Any]) -> Any:
    """Call a creator from blocking code; an async creator there is a mistake we name."""
    value = creator()
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise TypeError(
            "an async creator was given to the blocking twin (cache.sync); await "
            "cache.get_or_create(...) instead, or pass a plain function"
        )
    return value


def refresh_in_background(work: Callable[..., Any], *args: Any) -> None:
    """Run a refresh on a daemon thread. Its error was counted (creator_errors) where it
    happened and stale data keeps serving, so it is not raised again."""

    def run() -> None:
        with contextlib.suppress(Exception):
            work(*args)

    threading.Thread(target=run, daemon=True).start()


def early_refresh_draw(beta: float) -> float:
    """XFetch's random factor: how many creator durations ahead of expiry this read looks."""
    return -beta * math.log(1.0 - random.random())


def is_due_early(now: float, delta: float, beta: float | None, soft_deadline: float) -> bool:
    """Whether a read at ``now`` refreshes a value early (XFetch), given its creator's time."""
    if not beta or soft_deadline == math.inf:
        return False
    return now + delta * early_refresh_draw(beta) >= soft_deadline


def check_refresh_options(*, early_refresh_beta: float | None, jitter: float) -> None:
    """Raise `ConfigurationError` for an XFetch beta or a jitter fraction out of range."""
    if early_refresh_beta is not None and not early_refresh_beta > 0:
        raise ConfigurationError(
            f"early_refresh_beta must be > 0 (1.0 is the usual choice) or None, "
            f"got {early_refresh_beta!r}"
        )
    if not 0.0 <= jitter < 1.0:
        raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")


def jittered(ttl: float, jitter: float) -> float:
    """``ttl`` shortened by up to the fraction ``jitter``, at random."""
    if not jitter:
        return ttl
    return ttl * (1.0 - jitter * random.random())


class Flight(Protocol):
    """What the table needs of an entry: the tags it carries, and a flag it can raise."""

    @property
    def tags(self) -> Collection[str]: ...

    detached: bool


F = TypeVar("F", bound=Flight)


class FlightTable(Generic[F]):
    """The work in flight per key in this process: what later callers of the key join.

    An invalidation *detaches* the work it touches: the flight stays with the callers that
    already joined it, is marked ``detached`` (so it does not write back), and is no longer found
    by key, so a caller arriving after the invalidation starts afresh. Entries exist only while
    work is in flight, so the table holds no state for idle keys.
    """

    __slots__ = ("by_key",)

    def __init__(self) -> None:
        #: The flights by key; hot paths may read and write it directly.
        self.by_key: dict[str, F] = {}

    def get(self, key: str) -> F | None:
        return self.by_key.get(key)

    def put(self, key: str, flight: F) -> None:
        self.by_key[key] = flight

    def discard(self, key: str, flight: object) -> None:
        """Forget ``flight`` if it is still the one registered for ``key``."""
        if self.by_key.get(key) is flight:
            del self.by_key[key]

    def detach(self, key: str) -> None:
        flight = self.by_key.pop(key, None)
        if flight is not None:
            flight.detached = True

    def detach_tagged(self, tags: Collection[str]) -> None:
        """Detach every flight carrying one of ``tags`` (scans work in flight only)."""
        wanted = set(tags)
        for key in [k for k, f in self.by_key.items() if wanted.intersection(f.tags)]:
            self.detach(key)

    def detach_all(self) -> None:
        for flight in self.by_key.values():
            flight.detached = True
        self.by_key.clear()

    def __len__(self) -> int:
        return len(self.by_key)

    def __iter__(self) -> Iterator[F]:
        return iter(list(self.by_key.values()))


def backoff(attempt: int, first: float, longest: float) -> float:
    """The pause before looking again: ``first`` doubling up to ``longest``, jittered down by up
    to half so waiters of one lease do not look all at once."""
    return float(min(first * 2 ** min(attempt, 30), longest)) * (0.5 + random.random() / 2)


#: An operation written once: a generator that yields the I/O it needs and receives its outcome.
Steps = Generator[Any, Any, Any]


class StepRun:
    """Runs steps for a driver: iterate for the next step, hand back its outcome with `reply`
    or `fail`; once the iteration ends, `value` holds what the steps returned (or they raised).

    A driver is the whole of what differs between an async adapter and its blocking twin::

        run = StepRun(steps)
        for step in run:
            try:
                run.reply(await perform(step))   # or a blocking perform(step)
            except BaseException as exc:
                run.fail(exc)                    # raised inside the steps, where they stand
        return run.value
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
