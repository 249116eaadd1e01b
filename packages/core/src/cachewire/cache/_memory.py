"""`InMemoryCacheAdapter`: a process-local, stampede-safe cache."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import attrs

from cachewire.cache._base import (
    MISSING,
    BaseCacheAdapter,
    Creator,
    SyncCacheAdapter,
    _Missing,
    validate_ttl,
)
from cachewire.cache._stats import CacheStats
from cachewire.errors import ConfigurationError, ReentrantCallError

__all__ = ["InMemoryCacheAdapter"]

T = TypeVar("T")

_KEYS_REPORTED = 100
#: (adapter id, key) pairs whose creator runs in the current task or thread.
_computing: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "cachewire_memory_computing", default=frozenset()
)
_tag_clock = itertools.count(1)
_SHARED_VERSIONS = 1024  # distinct tag-version tuples shared between entries, at most


@attrs.define(slots=True)
class _Entry:
    value: Any
    soft_deadline: float  # math.inf when it never expires
    hard_deadline: float
    tag_versions: tuple[int, ...]
    tags: tuple[str, ...]
    delta: float  # how long the computation took (for early refresh)
    plain: bool  # the adapter keeps no per-hit bookkeeping: the lock-free hit path applies
    # The tag clock (`_tags_changed`) at which tag_versions were last known current: while no tag
    # has changed since, a hit needs no look at the versions.
    tags_current_at: int


@attrs.define(slots=True, eq=False)
class _Flight:
    """One computation in progress; waiters of both kinds share its outcome."""

    tag_versions: tuple[int, ...]
    tags_read_at: int
    write_back: bool = True
    task: asyncio.Task[Any] | None = None
    done: threading.Event = attrs.field(factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


_PLAIN_NUMBERS = frozenset({int, float})


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class InMemoryCacheAdapter(BaseCacheAdapter):
    """A cache in this process's memory with single flight per key.

    Options: ``default_ttl`` (seconds, ``None`` = no expiry), ``max_entries`` (LRU bound;
    computations in flight are never evicted), ``stale_ttl`` (serve the old value this long after
    expiry while one caller refreshes), ``early_refresh_beta`` (probabilistic early refresh,
    XFetch), ``jitter`` (fraction of the TTL removed at random), ``clock`` (monotonic seconds).

    Async and blocking callers share the store, the statistics and single flight: a thread, a
    coroutine and a coroutine on another thread's loop asking for one key share one computation.
    """

    def __init__(
        self,
        *,
        default_ttl: float | None = 3600,
        max_entries: int | None = None,
        stale_ttl: float | None = None,
        early_refresh_beta: float | None = None,
        jitter: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        self.stale_ttl = validate_ttl(stale_ttl, name="stale_ttl") or 0.0
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError(f"max_entries must be >= 1 or None, got {max_entries!r}")
        if not 0.0 <= jitter < 1.0:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")
        self.max_entries = max_entries
        self.early_refresh_beta = early_refresh_beta
        self.jitter = jitter
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._tags: dict[str, int] = {}
        self._tags_changed = 0  # the tag clock's value at the latest invalidate_tags or clear
        self._versions: dict[tuple[int, ...], tuple[int, ...]] = {}  # shared by equal entries
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._stats = CacheStats()
        self._fast_hits = 0  # hits of the lock-free path, folded into the statistics when read
        self._sync = _SyncMemory(self)
        self._background: set[asyncio.Task[Any]] = set()
        # Hits need no bookkeeping (LRU order, early refresh) unless these options are on.
        self._plain_hits = max_entries is None and not early_refresh_beta

    # ----------------------------------------------------------------- helpers

    def _ttl(self, ttl_seconds: float | _Missing | None) -> float | None:
        if isinstance(ttl_seconds, _Missing):
            return self.default_ttl
        return validate_ttl(ttl_seconds)

    def _tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        if not tags:
            return ()
        versions = tuple(self._tags.get(tag, 0) for tag in tags)
        shared = self._versions.get(versions)
        if shared is None:
            if len(self._versions) >= _SHARED_VERSIONS:
                self._versions.clear()
            shared = self._versions[versions] = versions
        return shared

    def _plain_hit(self, key: str, ttl_seconds: Any = MISSING) -> Any:
        """The value of a fresh, current entry that needs no bookkeeping, else MISSING (also when
        ``ttl_seconds`` is not plainly valid: the caller's full check then decides).

        Lock-free: tag versions only ever grow, and an invalidation sets them before it moves the
        tag clock, so a read sees each invalidation either entirely or not at all, as a locked
        read would.
        """
        if not (
            ttl_seconds is MISSING
            or ttl_seconds is None
            # mypy reads the class test as narrowing to object; it is an int or a float here
            or (ttl_seconds.__class__ in _PLAIN_NUMBERS and ttl_seconds >= 0)  # type: ignore[operator]
        ):
            return MISSING
        entry = self._entries.get(key)
        if entry is None or not entry.plain or self._clock() >= entry.soft_deadline:
            return MISSING
        if entry.tags and entry.tags_current_at != self._tags_changed:
            changed = self._tags_changed
            versions = self._tags
            for tag, version in zip(entry.tags, entry.tag_versions, strict=True):
                if versions.get(tag, 0) != version:
                    return MISSING
            entry.tags_current_at = changed
        self._fast_hits += 1
        return entry.value

    def _lookup(self, key: str, now: float) -> tuple[_Entry | None, bool]:
        """(entry, fresh): the entry if usable at all, and whether it is within its TTL."""
        entry = self._entries.get(key)
        if entry is None:
            return None, False
        if entry.tag_versions and entry.tag_versions != self._tag_versions(entry.tags):
            self._entries.pop(key, None)
            return None, False
        if now >= entry.hard_deadline:
            self._entries.pop(key, None)
            return None, False
        fresh = now < entry.soft_deadline
        if fresh and self.early_refresh_beta and entry.soft_deadline != math.inf:
            # XFetch: refresh a little early with a probability that rises near expiry.
            gap = entry.delta * self.early_refresh_beta * -math.log(1.0 - random.random())
            if now + gap >= entry.soft_deadline:
                fresh = False
                self._stats.early_refreshes += 1
        if self.max_entries is not None:
            self._entries.move_to_end(key)
        return entry, fresh

    def _store(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        tags: Sequence[str],
        versions: tuple[int, ...],
        delta: float,
        tags_read_at: int,
    ) -> None:
        if ttl == 0:
            return
        now = self._clock()
        if ttl is None:
            soft = hard = math.inf
        else:
            if self.jitter:
                ttl = ttl * (1.0 - self.jitter * random.random())
            soft = now + ttl
            hard = soft + self.stale_ttl if self.stale_ttl else soft
        self._entries[key] = _Entry(
            value, soft, hard, versions, tuple(tags), delta, self._plain_hits, tags_read_at
        )
        self._entries.move_to_end(key)
        if self.max_entries is not None:
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self._stats.evictions += 1

    def _check_reentry(self, key: str) -> None:
        if (id(self), key) in _computing.get():
            raise ReentrantCallError(
                f"the creator of cache key {key!r} asked the cache for that same key; "
                "it would wait for itself forever"
            )

    def _start_flight(self, key: str, tags: Sequence[str]) -> _Flight:
        flight = _Flight(tag_versions=self._tag_versions(tags), tags_read_at=self._tags_changed)
        self._flights[key] = flight
        self._stats.misses += 1
        self._stats.creator_calls += 1
        return flight

    def _finish(
        self,
        key: str,
        flight: _Flight,
        ttl: float | None,
        tags: Sequence[str],
        started: float,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        elapsed = time.monotonic() - started
        with self._lock:
            self._stats.creator_time_total += elapsed
            if self._flights.get(key) is flight:
                del self._flights[key]
            if error is None and flight.write_back:
                self._store(
                    key, value, ttl, tags, flight.tag_versions, elapsed, flight.tags_read_at
                )
            elif error is not None:
                self._stats.creator_errors += 1
            elif not flight.write_back:
                self._stats.writes_rejected += 1
        flight.value, flight.error = value, error
        flight.done.set()

    # ------------------------------------------------------------------- async

    async def get_or_create(
        self,
        key: str,
        creator: Creator,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> Any:
        value = self._plain_hit(key, ttl_seconds)
        if value is not MISSING:
            return value
        ttl = self._ttl(ttl_seconds)
        # One decision under the lock, so a thread and a coroutine never both start computing.
        with self._lock:
            entry, fresh = self._lookup(key, self._clock())
            if fresh:
                self._stats.hits += 1
                return entry.value  # type: ignore[union-attr]
            self._check_reentry(key)
            flight = self._flights.get(key)
            starts = flight is None
            if flight is None:
                flight = self._start_flight(key, tags)
        if entry is not None and (stale_ttl is None or stale_ttl > 0):
            # Within the grace period: answer at once, refresh once in the background.
            self._stats.stale_hits += 1
            if starts:
                refresh = self._launch(key, flight, creator, ttl, tags)
                self._background.add(refresh)
                refresh.add_done_callback(self._background_done)
            return entry.value
        if starts:
            return await asyncio.shield(self._launch(key, flight, creator, ttl, tags))
        self._stats.coalesced += 1
        task = flight.task
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(task)
        # Computed by a thread, or on another thread's event loop.
        await asyncio.to_thread(flight.done.wait)
        if flight.error is not None:
            raise flight.error
        return flight.value

    def _launch(
        self, key: str, flight: _Flight, creator: Creator, ttl: float | None, tags: Sequence[str]
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(
            self._compute(key, flight, creator, ttl, tags)
        )
        flight.task = task
        # If every caller is cancelled the computation still finishes; its error is counted.
        task.add_done_callback(_retrieve)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        _retrieve(task)  # the error was counted; stale data keeps serving

    async def _compute(
        self,
        key: str,
        flight: _Flight,
        creator: Creator,
        ttl: float | None,
        tags: Sequence[str],
    ) -> Any:
        _computing.set(_computing.get() | {(id(self), key)})
        started = time.monotonic()
        try:
            value = creator()
            if inspect.isawaitable(value):
                value = await value
        except BaseException as exc:
            self._finish(key, flight, ttl, tags, started, error=exc)
            raise
        self._finish(key, flight, ttl, tags, started, value=value)
        return value

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        return self._get(key, default)

    def _get(self, key: str, default: Any) -> Any:
        value = self._plain_hit(key)
        if value is not MISSING:
            return value
        with self._lock:
            entry, fresh = self._lookup(key, self._clock())
        if entry is None or not fresh:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return entry.value

    async def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        self._set(key, value, ttl_seconds, tags)

    def _set(
        self, key: str, value: Any, ttl_seconds: float | _Missing | None, tags: Sequence[str]
    ) -> None:
        ttl = self._ttl(ttl_seconds)
        with self._lock:
            self._store(key, value, ttl, tags, self._tag_versions(tags), 0.0, self._tags_changed)

    async def invalidate(self, key: str) -> bool:
        return self._invalidate(key)

    def _invalidate(self, key: str) -> bool:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.write_back = False
            return self._entries.pop(key, None) is not None

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        self._invalidate_tags(tags)

    def _invalidate_tags(self, tags: Sequence[str]) -> None:
        # A process-wide increasing clock: a tag can never return to a version an entry recorded.
        with self._lock:
            for tag in tags:
                self._tags[tag] = next(_tag_clock)
            # After the versions: a lock-free hit that sees the new clock sees the new versions.
            self._tags_changed = next(_tag_clock)

    async def clear(self) -> None:
        self._clear()

    def _clear(self) -> None:
        with self._lock:
            for flight in self._flights.values():
                flight.write_back = False
            self._entries.clear()
            self._tags.clear()
            self._tags_changed = next(_tag_clock)

    def get_stats(self) -> dict[str, Any]:
        with self._lock:
            keys = list(itertools.islice(self._entries, _KEYS_REPORTED))
            size = len(self._entries)
        self._stats.hits += self._fast_hits
        self._fast_hits = 0
        report = self._stats.as_dict(size=size, keys=keys)
        report["in_flight"] = len(self._flights)
        report["tags"] = len(self._tags)
        return report

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync


class _SyncMemory(SyncCacheAdapter):
    """Blocking twin of `InMemoryCacheAdapter`: same store, thread-safe."""

    def __init__(self, adapter: InMemoryCacheAdapter) -> None:
        self._adapter = adapter
        self._cache = adapter

    def get_or_create(
        self,
        key: str,
        creator: Callable[[], T],
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> T:
        cache = self._cache
        value = cache._plain_hit(key, ttl_seconds)
        if value is not MISSING:
            return cast(T, value)
        ttl = cache._ttl(ttl_seconds)
        with cache._lock:
            entry, fresh = cache._lookup(key, cache._clock())
            if fresh:
                cache._stats.hits += 1
                return cast(T, entry.value)  # type: ignore[union-attr]
            cache._check_reentry(key)
            flight = cache._flights.get(key)
            leader = flight is None
            if entry is not None and (stale_ttl is None or stale_ttl > 0) and not leader:
                cache._stats.stale_hits += 1
                return cast(T, entry.value)
            if leader:
                flight = cache._start_flight(key, tags)
            else:
                cache._stats.coalesced += 1
        assert flight is not None
        if not leader:
            # Blocks until the computing thread or event loop finishes (do not call the blocking
            # twin on the loop that is computing the same key).
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return cast(T, flight.value)
        token = _computing.set(_computing.get() | {(id(cache), key)})
        started = time.monotonic()
        try:
            value = creator()
        except BaseException as exc:
            cache._finish(key, flight, ttl, tags, started, error=exc)
            raise
        finally:
            _computing.reset(token)
        cache._finish(key, flight, ttl, tags, started, value=value)
        return value

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        return self._cache._get(key, default)

    def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        self._cache._set(key, value, ttl_seconds, tags)

    def invalidate(self, key: str) -> bool:
        return self._cache._invalidate(key)

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        self._cache._invalidate_tags(tags)

    def clear(self) -> None:
        self._cache._clear()
