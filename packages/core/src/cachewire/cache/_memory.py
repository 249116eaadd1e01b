"""`InMemoryCacheAdapter`: a process-local, stampede-safe cache."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import attrs

from cachewire.cache._base import (
    MAX_TTL_SECONDS,
    MISSING,
    BaseCacheAdapter,
    Creator,
    SyncCacheAdapter,
    _Missing,
    validate_key,
    validate_ttl,
)
from cachewire.cache._codec import Codec, codec_call
from cachewire.cache._flight import (
    CreatorRun,
    FlightTable,
    call_creator,
    check_reentry,
    check_refresh_options,
    is_due_early,
    jittered,
    refresh_in_background,
)
from cachewire.cache._stats import CacheStats
from cachewire.errors import ConfigurationError

__all__ = ["InMemoryCacheAdapter"]

T = TypeVar("T")

_KEYS_REPORTED = 100
_tag_clock = itertools.count(1)
_MAX_TTL_FLOAT = float(MAX_TTL_SECONDS)
_QUICK_INT_TTL = 2**30 - 1  # the largest int CPython compares inline (one 30-bit digit)

# What a get_or_create that found no fresh value does next.
_STALE = "stale"  # answer with the stale value; someone else refreshes it
_STALE_REFRESH = "stale-refresh"  # answer with the stale value and refresh it in the background
_LEAD = "lead"  # compute it
_JOIN = "join"  # wait for the computation in flight


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

    tags: tuple[str, ...]
    tag_versions: tuple[int, ...]
    tags_read_at: int  # the tag clock when tag_versions were read
    detached: bool = False  # invalidated meanwhile: its value is not written back
    task: asyncio.Task[Any] | None = None
    done: threading.Event = attrs.field(factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class InMemoryCacheAdapter(BaseCacheAdapter):
    """A cache in this process's memory with single flight per key.

    Options: ``default_ttl`` (seconds, ``None`` = no expiry), ``max_entries`` (LRU bound;
    computations in flight are never evicted), ``stale_ttl`` (serve the old value this long after
    expiry while one caller refreshes), ``early_refresh_beta`` (probabilistic early refresh,
    XFetch), ``jitter`` (fraction of the TTL removed at random), ``clock`` (monotonic seconds),
    ``codec`` (opt-in: every stored value makes a round trip through it, so values a remote cache
    would refuse fail here too, and hits return a copy as they would from Redis).

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
        codec: Codec | None = None,
    ) -> None:
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        self.stale_ttl = validate_ttl(stale_ttl, name="stale_ttl") or 0.0
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError(f"max_entries must be >= 1 or None, got {max_entries!r}")
        check_refresh_options(early_refresh_beta=early_refresh_beta, jitter=jitter)
        self.max_entries = max_entries
        self.early_refresh_beta = early_refresh_beta
        self.jitter = jitter
        self.codec = codec
        self._encode: Callable[[Any, str], bytes] | None = None
        self._decode: Callable[[bytes, str], Any] | None = None
        if codec is not None:
            self._encode, self._decode = codec_call(codec)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Tag versions exist only while an entry or a computation carries the tag (counted here).
        self._tags: dict[str, int] = {}
        self._tag_refs: dict[str, int] = {}
        self._flights: FlightTable[_Flight] = FlightTable()
        self._lock = threading.Lock()
        self._stats = CacheStats()
        self._fast_hits = 0  # hits of the lock-free path, folded into the statistics when read
        self._tags_changed = 0  # the tag clock's value at the latest invalidate_tags or clear
        self._last_versions: tuple[int, ...] = ()  # shared by entries that carry the same
        self._sync = _SyncMemory(self)
        self._background: set[asyncio.Task[Any]] = set()
        # Hits need no bookkeeping (LRU order, early refresh) unless these options are on.
        self._plain_hits = max_entries is None and not early_refresh_beta

    # --------------------------------------------------- decisions (no waiting)

    def _ttl(self, ttl_seconds: float | _Missing | None) -> float | None:
        if isinstance(ttl_seconds, _Missing):
            return self.default_ttl
        return validate_ttl(ttl_seconds)

    def _tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        if not tags:
            return ()
        versions = tuple(self._tags.get(tag, 0) for tag in tags)
        # Entries stored one after another mostly carry the same versions (one function, one
        # partition): they share one tuple instead of each keeping its own.
        if versions == self._last_versions:
            return self._last_versions
        self._last_versions = versions
        return versions

    def _carry(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self._tag_refs[tag] = self._tag_refs.get(tag, 0) + 1

    def _drop_carried(self, tags: Sequence[str]) -> None:
        for tag in tags:
            left = self._tag_refs[tag] - 1
            if left:
                self._tag_refs[tag] = left
            else:  # nothing carries it: its version no longer matters
                del self._tag_refs[tag]
                self._tags.pop(tag, None)

    def _pop_entry(self, key: str) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.tags:
            self._drop_carried(entry.tags)
        return entry

    def _usable(self, entry: _Entry, now: float) -> bool:
        return now < entry.hard_deadline and (
            not entry.tag_versions or entry.tag_versions == self._tag_versions(entry.tags)
        )

    def _lookup(self, key: str, now: float) -> tuple[_Entry | None, bool]:
        """(entry, fresh): the entry if usable at all, and whether it is within its TTL."""
        entry = self._entries.get(key)
        if entry is None:
            return None, False
        if not self._usable(entry, now):
            self._pop_entry(key)
            return None, False
        fresh = now < entry.soft_deadline
        if fresh and is_due_early(now, entry.delta, self.early_refresh_beta, entry.soft_deadline):
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
            self._pop_entry(key)  # "do not store" leaves nothing older readable either
            return
        now = self._clock()
        if ttl is None:
            soft = hard = math.inf
        else:
            soft = now + jittered(ttl, self.jitter)
            hard = soft + self.stale_ttl if self.stale_ttl else soft  # one float, not two
        self._pop_entry(key)
        self._carry(tags)
        self._entries[key] = _Entry(
            value,
            soft,
            hard,
            versions,
            tuple(tags),
            # Only early refresh reads it: without, every entry shares one 0.0.
            delta if self.early_refresh_beta else 0.0,
            self._plain_hits,
            tags_read_at,
        )
        if self.max_entries is not None:
            while len(self._entries) > self.max_entries:
                self._pop_entry(next(iter(self._entries)))
                self._stats.evictions += 1

    def _round_trip(self, key: str, value: Any) -> Any:
        """The value as a remote cache would give it back (with a codec), else itself."""
        if self._encode is None or self._decode is None:
            return value
        return self._decode(self._encode(value, key), key)

    def _fast_hit(self, key: str, ttl_seconds: Any = MISSING) -> Any:
        """The value of a fresh, current entry that needs no bookkeeping, read without the lock,
        else MISSING (also when ``ttl_seconds`` is not plainly valid: the caller's full check
        then decides).

        Tag versions only ever grow, and an invalidation sets them before it moves the tag clock,
        so a read sees each invalidation either entirely or not at all, as a locked read would.
        """
        if ttl_seconds is not MISSING:
            # An exact int or float compared with a constant of its own type: the interpreter
            # compares these without a call. NaN, infinities, other types and ints beyond
            # `_QUICK_INT_TTL` (34 years; still valid) take the full check.
            if type(ttl_seconds) is int:
                if not (ttl_seconds >= 0 and ttl_seconds <= _QUICK_INT_TTL):
                    return MISSING
            elif type(ttl_seconds) is float:
                if not (ttl_seconds >= 0.0 and ttl_seconds <= _MAX_TTL_FLOAT):
                    return MISSING
            elif ttl_seconds is not None:
                return MISSING
        if type(key) is not str:  # checked (and refused) on the full path
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

    def _begin(
        self, key: str, tags: Sequence[str], stale_ttl: float | None
    ) -> tuple[str, Any, _Flight | None]:
        """One decision under the lock, so a thread and a coroutine never both start computing:
        (what to do, the value to answer with or MISSING, the flight to lead or join)."""
        with self._lock:
            entry, fresh = self._lookup(key, self._clock())
            if entry is not None and fresh:
                self._stats.hits += 1
                return "", entry.value, None
            validate_key(key)
            check_reentry(self, key)
            flight = self._flights.get(key)
            starts = flight is None
            if flight is None:
                flight = _Flight(tuple(tags), self._tag_versions(tags), self._tags_changed)
                self._carry(tags)
                self._flights.put(key, flight)
            if entry is not None and (stale_ttl is None or stale_ttl > 0):
                self._stats.stale_hits += 1
                return (_STALE_REFRESH if starts else _STALE), entry.value, flight
            if starts:
                return _LEAD, MISSING, flight
            self._stats.coalesced += 1
            return _JOIN, MISSING, flight

    def _finish(
        self,
        key: str,
        flight: _Flight,
        ttl: float | None,
        run: CreatorRun,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            elapsed = run.finish(failed=error is not None)
            self._flights.discard(key, flight)
            if error is None and not flight.detached:
                self._store(
                    key, value, ttl, flight.tags, flight.tag_versions, elapsed, flight.tags_read_at
                )
            elif error is None:
                self._stats.writes_rejected += 1
            self._drop_carried(flight.tags)
        flight.value, flight.error = value, error
        flight.done.set()

    def _compute_blocking(self, key: str, flight: _Flight, creator: Creator, ttl: Any) -> Any:
        run = CreatorRun(self, key, self._stats)
        try:
            value = self._round_trip(key, call_creator(creator))
        except BaseException as exc:
            self._finish(key, flight, ttl, run, error=exc)
            raise
        self._finish(key, flight, ttl, run, value=value)
        return value

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
        value = self._fast_hit(key, ttl_seconds)
        if value is not MISSING:
            return value
        ttl = self._ttl(ttl_seconds)
        if type(key) is not str:
            validate_key(key)
        kind, value, flight = self._begin(key, tags, stale_ttl)
        if flight is None or kind == _STALE:
            return value
        if kind == _STALE_REFRESH:
            refresh = self._launch(key, flight, creator, ttl)
            self._background.add(refresh)
            refresh.add_done_callback(self._background_done)
            return value
        if kind == _LEAD:
            return await asyncio.shield(self._launch(key, flight, creator, ttl))
        task = flight.task
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(task)
        # Computed by a thread, or on another thread's event loop.
        await asyncio.to_thread(flight.done.wait)
        if flight.error is not None:
            raise flight.error
        return flight.value

    def _launch(self, key: str, flight: _Flight, creator: Creator, ttl: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._compute(key, flight, creator, ttl))
        flight.task = task
        # If every caller is cancelled the computation still finishes; its error is counted.
        task.add_done_callback(_retrieve)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        _retrieve(task)  # the error was counted; stale data keeps serving

    async def _compute(self, key: str, flight: _Flight, creator: Creator, ttl: Any) -> Any:
        run = CreatorRun(self, key, self._stats)
        try:
            value = creator()
            if inspect.isawaitable(value):
                value = await value
            value = self._round_trip(key, value)
        except BaseException as exc:
            self._finish(key, flight, ttl, run, error=exc)
            raise
        self._finish(key, flight, ttl, run, value=value)
        return value

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        return self._get(key, default)

    def _get(self, key: str, default: Any) -> Any:
        value = self._fast_hit(key)
        if value is not MISSING:
            return value
        if type(key) is not str:
            validate_key(key)
        with self._lock:
            entry, fresh = self._lookup(key, self._clock())
        if entry is None or not fresh:
            validate_key(key)
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
        validate_key(key)
        ttl = self._ttl(ttl_seconds)
        value = self._round_trip(key, value)
        with self._lock:
            self._store(key, value, ttl, tags, self._tag_versions(tags), 0.0, self._tags_changed)

    async def invalidate(self, key: str, *, strict: bool = False) -> bool:
        return self._invalidate(key)

    def _invalidate(self, key: str) -> bool:
        validate_key(key)
        with self._lock:
            self._flights.detach(key)
            entry = self._pop_entry(key)
            return entry is not None and self._usable(entry, self._clock())

    async def invalidate_tags(self, tags: Sequence[str], *, strict: bool = False) -> None:
        self._invalidate_tags(tags)

    def _invalidate_tags(self, tags: Sequence[str]) -> None:
        # A process-wide increasing clock: a tag can never return to a version an entry recorded.
        with self._lock:
            self._flights.detach_tagged(tags)
            for tag in tags:
                if tag in self._tag_refs:  # else nothing carries it: nothing to make stale
                    self._tags[tag] = next(_tag_clock)
            # After the versions: a lock-free hit that sees the new clock sees the new versions.
            self._tags_changed = next(_tag_clock)

    async def clear(self) -> None:
        self._clear()

    def _clear(self) -> None:
        with self._lock:
            carried = [flight.tags for flight in self._flights]
            self._flights.detach_all()
            self._entries.clear()
            self._tags.clear()
            self._tag_refs.clear()
            self._tags_changed = next(_tag_clock)
            for tags in carried:  # computations still running keep their tags counted
                self._carry(tags)

    def get_stats(self) -> dict[str, Any]:
        with self._lock:
            keys = list(itertools.islice(self._entries, _KEYS_REPORTED))
            size = len(self._entries)
            in_flight, tags = len(self._flights), len(self._tags)
        self._stats.hits += self._fast_hits
        self._fast_hits = 0
        report = self._stats.as_dict(size=size, keys=keys)
        report["in_flight"] = in_flight
        report["tags"] = tags
        return report

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync


class _SyncMemory(SyncCacheAdapter):
    """Blocking twin of `InMemoryCacheAdapter`: same store, same decisions, thread-safe."""

    _adapter: InMemoryCacheAdapter

    def get_or_create(
        self,
        key: str,
        creator: Callable[[], T],
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> T:
        cache = self._adapter
        value = cache._fast_hit(key, ttl_seconds)
        if value is not MISSING:
            return cast(T, value)
        ttl = cache._ttl(ttl_seconds)
        if type(key) is not str:
            validate_key(key)
        kind, value, flight = cache._begin(key, tags, stale_ttl)
        if flight is None or kind == _STALE:
            return cast(T, value)
        if kind == _STALE_REFRESH:
            refresh_in_background(cache._compute_blocking, key, flight, creator, ttl)
            return cast(T, value)
        if kind == _LEAD:
            return cast(T, cache._compute_blocking(key, flight, creator, ttl))
        # Blocks until the computing thread or event loop finishes (do not call the blocking
        # twin on the loop that is computing the same key).
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return cast(T, flight.value)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        return self._adapter._get(key, default)

    def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        self._adapter._set(key, value, ttl_seconds, tags)

    def invalidate(self, key: str, *, strict: bool = False) -> bool:
        return self._adapter._invalidate(key)

    def invalidate_tags(self, tags: Sequence[str], *, strict: bool = False) -> None:
        self._adapter._invalidate_tags(tags)

    def clear(self) -> None:
        self._adapter._clear()
