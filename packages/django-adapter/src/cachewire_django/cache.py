"""`DjangoCacheAdapter`: a cachewire cache adapter over any Django cache.

One computation per key: callers in one process share it (the core's `FlightTable`), and
processes share a lease taken with ``cache.add`` (atomic on every Django backend), so one caller
in the cluster computes while the others wait for its value, or are answered with the older one
(``stale_ttl``). Tags are version tokens stored next to the entries, so invalidating a tag, or
`clear()`, is one write whatever the number of entries; invalidating a key leaves a short-lived
version token too, so a computation it overtook cannot store a value readers would take.

Every operation is written once, as a generator of the backend calls it needs (the core's
`StepRun`); the async adapter performs those calls on a worker thread, its blocking twin in the
caller's thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import inspect
import math
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

import attrs
from asgiref.sync import sync_to_async
from django.core.cache import caches

from cachewire.cache import (
    MISSING,
    BaseCacheAdapter,
    CacheStats,
    CreatorRun,
    FlightTable,
    StepRun,
    Steps,
    SyncCacheAdapter,
    backoff,
    call_creator,
    check_reentry,
    check_refresh_options,
    is_due_early,
    jittered,
    refresh_in_background,
    validate_key,
    validate_ttl,
)
from cachewire.errors import CacheBackendError, ConfigurationError

__all__ = ["DjangoCacheAdapter"]

T = TypeVar("T")
_KEYS_REPORTED = 100
_ALL = "*"  # the tag every entry carries; `clear()` bumps it
_LONGEST_WAIT = 0.25  # seconds between two looks at a key another process computes

# What a read found (see `DjangoCacheAdapter._look`).
_FRESH, _EARLY, _STALE, _MISS = "fresh", "early", "stale", "miss"


@attrs.frozen
class _Compute:
    """A step: run the creator; the reply is (value, seconds it ran)."""

    key: str
    creator: Callable[[], Any]


@attrs.frozen
class _Pause:
    """A step: wait before looking at the key again."""

    seconds: float


@attrs.frozen
class _Call:
    """A step: one call of the Django cache; the reply is what it returned."""

    method: str
    args: tuple[Any, ...]


@attrs.frozen
class _Miss:
    """What a get_or_create that finds no fresh value works with."""

    key: str
    creator: Callable[[], Any]
    ttl: float | None
    tags: tuple[str, ...]
    stale_ttl: float | None


@attrs.frozen
class _Refresh:
    """A lease this caller took while being answered with an older value: compute after."""

    miss: _Miss
    token: str
    versions: list[Any]


@attrs.define(eq=False)
class _Flight:
    """One read (then computation) of one key in this process; its callers share the outcome."""

    tags: tuple[str, ...]
    detached: bool = False  # invalidated meanwhile: its value is not stored
    done: threading.Event = attrs.Factory(threading.Event)
    value: Any = None
    error: BaseException | None = None
    future: asyncio.Future[Any] | None = None  # set when led on an event loop


def _call(name: str, *args: Any) -> _Call:
    return _Call(name, args)


class DjangoCacheAdapter(BaseCacheAdapter):
    """Cache adapter over the Django cache ``alias`` (LocMem, Redis, Memcached, database, ...).

    ``default_ttl`` in seconds (``None`` = no expiry); ``stale_ttl`` keeps a value that long past
    its TTL, so one caller refreshes it while the others are answered with it;
    ``early_refresh_beta`` turns on probabilistic early refresh (XFetch); ``jitter`` removes up
    to that fraction of each TTL at random; ``lock_timeout``: how long a lease lasts, so a
    crashed computer frees its key; ``poll_interval``: the first wait between looks at a key
    another process computes (it doubles up to 0.25 s); ``key_prefix`` separates adapters
    sharing one Django cache; ``clock``: wall-clock seconds, shared by every process (expiry is
    compared on it). Values are stored the way the Django cache stores them (pickled); backend
    errors raise `CacheBackendError`.
    """

    def __init__(
        self,
        alias: str = "default",
        *,
        default_ttl: float | None = 3600,
        stale_ttl: float | None = None,
        early_refresh_beta: float | None = None,
        jitter: float = 0.0,
        lock_timeout: float = 30.0,
        poll_interval: float = 0.005,
        key_prefix: str = "cw",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alias = alias
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        self.stale_ttl = validate_ttl(stale_ttl, name="stale_ttl") or 0.0
        check_refresh_options(early_refresh_beta=early_refresh_beta, jitter=jitter)
        self.early_refresh_beta = early_refresh_beta
        self.jitter = jitter
        if not lock_timeout > 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        self.lock_timeout = lock_timeout
        if not poll_interval > 0:
            raise ConfigurationError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.poll_interval = poll_interval
        self.key_prefix = key_prefix
        self.clock = clock
        self._stats = CacheStats()
        self._lock = threading.Lock()
        self._flights: FlightTable[_Flight] = FlightTable()
        self._background: set[asyncio.Task[Any]] = set()
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._sync = _BlockingDjangoCache(self)

    # ------------------------------------------------------------- layout

    @property
    def backend(self) -> Any:
        """The Django cache (looked up on each use, so ``override_settings`` applies)."""
        return caches[self.alias]

    def _key(self, kind: str, key: str) -> str:
        # Hashed: any string is a valid key on every backend (memcached refuses spaces, control
        # characters and keys over 250 bytes).
        digest = hashlib.blake2b(key.encode(), digest_size=20).hexdigest()
        return f"{self.key_prefix}:{kind}:{digest}"

    def _version_keys(self, key: str, tags: Sequence[str]) -> list[str]:
        """What a stored value must still match: every tag's version, and the key's own."""
        return [
            self._key("t", _ALL),
            *(self._key("t", tag) for tag in tags),
            self._key("x", key),
        ]

    def _reading_keys(self, key: str, tags: Sequence[str]) -> list[str]:
        # The lease before the value: a backend that reads them one by one then never sees a
        # lease already given up next to a value not yet stored.
        return [self._key("l", key), self._key("v", key), *self._version_keys(key, tags)]

    def _ttl(self, ttl_seconds: Any) -> float | None:
        if ttl_seconds is MISSING:
            return self.default_ttl
        return validate_ttl(ttl_seconds)

    @staticmethod
    def _timeout(seconds: float | None) -> int | None:
        """Django caches count whole seconds (and 0 would mean "expire now"): round up."""
        return None if seconds is None else max(1, math.ceil(seconds))

    def _remember(self, key: str) -> None:
        with self._lock:
            self._recent[key] = None
            self._recent.move_to_end(key)
            while len(self._recent) > _KEYS_REPORTED:
                self._recent.popitem(last=False)

    # ------------------------------------------------- decisions (no I/O)

    def _look(
        self, key: str, tags: Sequence[str], found: dict[str, Any], *, early: bool = True
    ) -> tuple[str, Any, list[Any]]:
        """(what the read found, its value or MISSING, the current versions) from one
        ``get_many`` answer: a fresh value, one due for an early refresh, a stale one (past its
        TTL, within ``stale_ttl``) or none."""
        versions = [found.get(k, 0) for k in self._version_keys(key, tags)]
        record = found.get(self._key("v", key))
        if not (isinstance(record, tuple) and len(record) == 4 and record[1] == versions):
            return _MISS, MISSING, versions
        value, _, soft_deadline, took = record
        if soft_deadline is None:
            return _FRESH, value, versions
        now = self.clock()
        if now >= soft_deadline:
            if now < soft_deadline + self.stale_ttl:
                return _STALE, value, versions
            return _MISS, MISSING, versions
        if early and is_due_early(now, took, self.early_refresh_beta, soft_deadline):
            return _EARLY, value, versions
        return _FRESH, value, versions

    def _store(
        self, key: str, value: Any, versions: list[Any], ttl: float | None, took: float
    ) -> _Call:
        """The step storing ``value``, kept ``stale_ttl`` past its (jittered) TTL."""
        value_key = self._key("v", key)
        if ttl is None:
            return _call("set", value_key, (value, versions, None, took), None)
        ttl = jittered(ttl, self.jitter)
        record = (value, versions, self.clock() + ttl, took)
        return _call("set", value_key, record, self._timeout(ttl + self.stale_ttl))

    def _join(self, key: str, tags: Sequence[str]) -> tuple[_Flight, bool]:
        """The flight of ``key`` and whether this caller leads it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                self._stats.coalesced += 1
                return flight, False
            flight = _Flight(tuple(tags))
            self._flights.put(key, flight)
            return flight, True

    def _land(self, key: str, flight: _Flight) -> None:
        with self._lock:
            self._flights.discard(key, flight)
        flight.done.set()

    # ------------------------------------------ the work, shared by both twins

    def _lead_steps(self, miss: _Miss, flight: _Flight) -> Steps:
        """Read the key; when it is not fresh take the lease (or wait for whoever holds it),
        compute and store. Returns (value, a `_Refresh` to run after answering, or None)."""
        if miss.ttl == 0:
            value, _ = yield _Compute(miss.key, miss.creator)
            return value, None
        keys = self._reading_keys(miss.key, miss.tags)
        lease_key = keys[0]
        attempt = 0
        while True:
            found = yield _call("get_many", keys)
            state, value, versions = self._look(miss.key, miss.tags, found)
            if state == _FRESH:
                self._stats.hits += 1
                return value, None
            serving = state == _EARLY or (
                state == _STALE and (miss.stale_ttl is None or miss.stale_ttl > 0)
            )
            holder = found.get(lease_key)
            token = None
            if not (isinstance(holder, tuple) and len(holder) == 2 and holder[1] == versions):
                token = secrets.token_hex(8)
                lease = (token, versions)
                timeout = self._timeout(self.lock_timeout)
                if holder is None:
                    if not (yield _call("add", lease_key, lease, timeout)):
                        token = None
                else:
                    # The holder computes for data an invalidation has replaced since: take over.
                    yield _call("set", lease_key, lease, timeout)
            if serving:
                if state == _STALE:
                    self._stats.stale_hits += 1
                else:
                    self._stats.hits += 1
                    self._stats.early_refreshes += token is not None
                if token is None:
                    return value, None
                return value, _Refresh(miss, token, versions)
            if token is not None:
                publish = self._publish_steps(miss, token, versions, flight)
                return (yield from publish), None
            # Another process computes: wait for its value, or for its lease to end.
            if not attempt:
                self._stats.lock_waits += 1
            yield _Pause(backoff(attempt, self.poll_interval, _LONGEST_WAIT))
            attempt += 1

    def _publish_steps(
        self,
        miss: _Miss,
        token: str,
        versions: list[Any],
        flight: _Flight | None,
    ) -> Steps:
        """Compute holding the lease; store unless an invalidation came meanwhile; release."""
        lease_key, value_key = self._key("l", miss.key), self._key("v", miss.key)
        try:
            value, took = yield _Compute(miss.key, miss.creator)
        except BaseException:
            yield from self._release_steps(lease_key, token)
            raise
        if flight is not None and flight.detached:  # invalidated in this process meanwhile
            self._stats.writes_rejected += 1
            yield from self._release_steps(lease_key, token)
            return value
        checks = [lease_key, *self._version_keys(miss.key, miss.tags)]
        # Django's cache cannot store only-if-unchanged: look (so that a computation an
        # invalidation overtook does not overwrite the value of one that started after it),
        # store, then look again for an invalidation in between. Readers refuse such a value
        # (its versions differ); it is taken back so that it never outlives the key's token.
        found = yield _call("get_many", checks)
        if self._still_current(miss, found, token, versions, flight):
            yield self._store(miss.key, value, versions, miss.ttl, took)
            found = yield _call("get_many", checks)
            if self._still_current(miss, found, token, versions, flight):
                self._remember(miss.key)
            else:
                self._stats.writes_rejected += 1
                yield _call("delete", value_key)
        else:
            self._stats.writes_rejected += 1
        holder = found.get(lease_key)
        if isinstance(holder, tuple) and holder[0] == token:
            yield _call("delete", lease_key)
        return value

    def _still_current(
        self,
        miss: _Miss,
        found: dict[str, Any],
        token: str,
        versions: list[Any],
        flight: _Flight | None,
    ) -> bool:
        """Whether nothing invalidated the key since ``versions`` were read: the lease (which a
        key invalidation deletes) is held with ``token``, no version moved, and nothing in this
        process detached the computation."""
        if flight is not None and flight.detached:
            return False
        holder = found.get(self._key("l", miss.key))
        current = [found.get(k, 0) for k in self._version_keys(miss.key, miss.tags)]
        return isinstance(holder, tuple) and holder[0] == token and current == versions

    def _release_steps(self, lease_key: str, token: str) -> Steps:
        # A lease that cannot be released expires by itself; the caller's outcome stands.
        try:
            holder = yield _call("get", lease_key)
            if isinstance(holder, tuple) and holder[0] == token:
                yield _call("delete", lease_key)
        except CacheBackendError:
            pass

    def _get_steps(self, key: str, default: Any, tags: Sequence[str]) -> Steps:
        keys = [self._key("v", key), *self._version_keys(key, tags)]
        state, value, _ = self._look(key, tags, (yield _call("get_many", keys)), early=False)
        if state != _FRESH:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return value

    def _set_steps(self, key: str, value: Any, ttl_seconds: Any, tags: Sequence[str]) -> Steps:
        ttl = self._ttl(ttl_seconds)
        value_key = self._key("v", key)
        try:
            if ttl == 0:  # "do not store": nothing older stays readable either
                yield _call("delete", value_key)
                return None
            found = yield _call("get_many", self._version_keys(key, tags))
            _, _, versions = self._look(key, tags, found)
            yield self._store(key, value, versions, ttl, 0.0)
            self._remember(key)
        finally:
            with self._lock:
                self._flights.detach(key)  # a read in flight here may have seen the older value
        return None

    def _invalidate_steps(self, key: str) -> Steps:
        with self._lock:
            self._flights.detach(key)
        # Readers refuse what a computation this overtakes may still store, for as long as
        # such a computation can hold its lease.
        yield _call(
            "set", self._key("x", key), secrets.token_hex(8), self._timeout(2 * self.lock_timeout)
        )
        yield _call("delete", self._key("l", key))
        existed = bool((yield _call("delete", self._key("v", key))))
        with self._lock:
            self._recent.pop(key, None)
        return existed

    def _invalidate_tags_steps(self, tags: Sequence[str]) -> Steps:
        with self._lock:
            self._flights.detach_tagged(tags)
        if tags:
            yield _call("set_many", {self._key("t", tag): secrets.token_hex(8) for tag in tags})
        return None

    def _clear_steps(self) -> Steps:
        with self._lock:
            self._flights.detach_all()
            self._recent.clear()
        yield _call("set", self._key("t", _ALL), secrets.token_hex(8), None)
        return None

    # ------------------------------------------------- performing a step

    def _perform_call(self, step: _Call) -> Any:
        """One Django cache call; any error of the backend becomes `CacheBackendError`."""
        try:
            return getattr(self.backend, step.method)(*step.args)
        except Exception as exc:
            self._stats.backend_errors += 1
            raise CacheBackendError(
                f"Django cache {self.alias!r}: {step.method} failed: {exc}"
            ) from exc

    async def _drive(self, steps: Steps) -> Any:
        """Perform the steps with the event loop free: cache calls on a worker thread."""
        run = StepRun(steps)
        for step in run:
            try:
                if isinstance(step, _Call):
                    run.reply(await sync_to_async(self._perform_call, thread_sensitive=False)(step))
                elif isinstance(step, _Compute):
                    with CreatorRun(self, step.key, self._stats) as creator_run:
                        value = step.creator()
                        if inspect.isawaitable(value):
                            value = await value
                    run.reply((value, creator_run.elapsed))
                else:
                    started = time.monotonic()
                    await asyncio.sleep(step.seconds)
                    self._stats.lock_wait_time += time.monotonic() - started
            except BaseException as exc:
                run.fail(exc)
        return run.value

    def _keep(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` in a task of the cache's, held until done (it outlives its callers)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --------------------------------------------------------- async API

    async def get_or_create(
        self,
        key: str,
        creator: Callable[[], Any],
        ttl_seconds: Any = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> Any:
        ttl = self._ttl(ttl_seconds)
        validate_key(key)
        check_reentry(self, key)
        # Callers of one key in this process share one read and, on a miss, one computation.
        flight, leader = self._join(key, tags)
        if leader:
            flight.future = asyncio.get_running_loop().create_future()
            self._keep(self._lead(_Miss(key, creator, ttl, tuple(tags), stale_ttl), flight))
        elif flight.future is None or flight.future.get_loop() is not asyncio.get_running_loop():
            # Led by a thread or another loop: wait for it without blocking this loop.
            await asyncio.get_running_loop().run_in_executor(None, flight.done.wait)
            if flight.error is not None:
                raise flight.error
            return flight.value
        assert flight.future is not None
        return await asyncio.shield(flight.future)

    async def _lead(self, miss: _Miss, flight: _Flight) -> None:
        assert flight.future is not None
        refresh = None
        try:
            flight.value, refresh = await self._drive(self._lead_steps(miss, flight))
        except BaseException as exc:
            flight.error = exc
            flight.future.set_exception(exc)
            flight.future.exception()  # retrieved: waiters may all have gone
        else:
            flight.future.set_result(flight.value)
        finally:
            self._land(miss.key, flight)
        if refresh is not None:
            self._keep(self._refresh(refresh))

    async def _refresh(self, refresh: _Refresh) -> None:
        # In the background: its error was counted (creator_errors); the old value keeps serving.
        steps = self._publish_steps(refresh.miss, refresh.token, refresh.versions, None)
        with contextlib.suppress(Exception):
            await self._drive(steps)

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        validate_key(key)
        return await self._drive(self._get_steps(key, default, tags))

    async def set(
        self, key: str, value: Any, ttl_seconds: Any = MISSING, *, tags: Sequence[str] = ()
    ) -> None:
        validate_key(key)
        await self._drive(self._set_steps(key, value, ttl_seconds, tags))

    async def invalidate(self, key: str) -> bool:
        validate_key(key)
        return bool(await self._drive(self._invalidate_steps(key)))

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._drive(self._invalidate_tags_steps(tags))

    async def clear(self) -> None:
        await self._drive(self._clear_steps())

    def get_stats(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._recent)
            in_flight = len(self._flights)
        report = self._stats.as_dict(size=None, keys=keys)
        report["in_flight"] = in_flight
        return report

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync


class _BlockingDjangoCache(SyncCacheAdapter):
    """The blocking twin: the adapter's own steps, performed with blocking calls."""

    _adapter: DjangoCacheAdapter

    def _drive(self, steps: Steps) -> Any:
        adapter = self._adapter
        run = StepRun(steps)
        for step in run:
            try:
                if isinstance(step, _Call):
                    run.reply(adapter._perform_call(step))
                elif isinstance(step, _Compute):
                    with CreatorRun(adapter, step.key, adapter._stats) as creator_run:
                        value = call_creator(step.creator)
                    run.reply((value, creator_run.elapsed))
                else:
                    started = time.monotonic()
                    time.sleep(step.seconds)
                    adapter._stats.lock_wait_time += time.monotonic() - started
            except BaseException as exc:
                run.fail(exc)
        return run.value

    def get_or_create(
        self,
        key: str,
        creator: Callable[[], T],
        ttl_seconds: Any = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> T:
        a = self._adapter
        ttl = a._ttl(ttl_seconds)
        validate_key(key)
        check_reentry(a, key)
        flight, leader = a._join(key, tags)
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return cast(T, flight.value)
        miss = _Miss(key, creator, ttl, tuple(tags), stale_ttl)
        try:
            flight.value, refresh = self._drive(a._lead_steps(miss, flight))
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            a._land(key, flight)
        value = flight.value
        if refresh is not None:
            steps = a._publish_steps(miss, refresh.token, refresh.versions, None)
            refresh_in_background(self._drive, steps)
        return cast(T, value)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        validate_key(key)
        return self._drive(self._adapter._get_steps(key, default, tags))

    def set(
        self, key: str, value: Any, ttl_seconds: Any = MISSING, *, tags: Sequence[str] = ()
    ) -> None:
        validate_key(key)
        self._drive(self._adapter._set_steps(key, value, ttl_seconds, tags))

    def invalidate(self, key: str) -> bool:
        validate_key(key)
        return bool(self._drive(self._adapter._invalidate_steps(key)))

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        self._drive(self._adapter._invalidate_tags_steps(tags))

    def clear(self) -> None:
        self._drive(self._adapter._clear_steps())
