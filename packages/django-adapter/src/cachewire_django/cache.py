"""`DjangoCacheAdapter`: a cachewire cache adapter over any Django cache.

One computation per key: callers in one process share it (a flight), and processes share a lease
taken with ``cache.add`` (atomic on every Django backend), so one caller in the cluster computes
while the others wait for its value. Tags are version tokens stored next to the entries, so
invalidating a tag, or `clear()`, is one write whatever the number of entries.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import hashlib
import inspect
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import caches

from cachewire.cache import MISSING, BaseCacheAdapter, CacheStats, SyncCacheAdapter, validate_ttl
from cachewire.errors import CacheBackendError, ConfigurationError, ReentrantCallError

__all__ = ["DjangoCacheAdapter"]

T = TypeVar("T")
_KEYS_REPORTED = 100
_ALL = "*"  # the tag every entry carries; `clear()` bumps it
_computing: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "cachewire_django_computing", default=frozenset()
)


class _Flight:
    """One computation of one key in this process; its callers share the outcome."""

    def __init__(self) -> None:
        self.write_back = True
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.future: asyncio.Future[Any] | None = None


class DjangoCacheAdapter(BaseCacheAdapter):
    """Cache adapter over the Django cache ``alias`` (LocMem, Redis, Memcached, database, ...).

    ``default_ttl`` in seconds (``None`` = no expiry; Django caches count whole seconds, so a TTL
    rounds up); ``lock_timeout``: how long a lease lasts, so a crashed computer frees its key;
    ``poll_interval``: the first wait between looks at a key another process computes (it doubles
    up to 0.25 s); ``key_prefix`` separates adapters sharing one Django cache. Values are stored the
    way the Django cache stores them (pickled). Serving stale values is not supported.
    """

    def __init__(
        self,
        alias: str = "default",
        *,
        default_ttl: float | None = 3600,
        lock_timeout: float = 30.0,
        poll_interval: float = 0.005,
        key_prefix: str = "cw",
    ) -> None:
        self.alias = alias
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        if lock_timeout <= 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        self.key_prefix = key_prefix
        self._stats = CacheStats()
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._leaders: set[asyncio.Task[None]] = set()
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

    def _tag_keys(self, tags: Sequence[str]) -> list[str]:
        return [self._key("t", _ALL), *(self._key("t", tag) for tag in tags)]

    def _ttl(self, ttl_seconds: Any) -> float | None:
        if ttl_seconds is MISSING:
            return self.default_ttl
        return validate_ttl(ttl_seconds)

    @staticmethod
    def _timeout(ttl: float | None) -> int | None:
        return None if ttl is None else max(1, math.ceil(ttl))

    def _remember(self, key: str) -> None:
        with self._lock:
            self._recent[key] = None
            self._recent.move_to_end(key)
            while len(self._recent) > _KEYS_REPORTED:
                self._recent.popitem(last=False)

    # ------------------------------------------------- decisions (no I/O)

    def _read(self, key: str, tags: Sequence[str], found: dict[str, Any]) -> tuple[Any, list[Any]]:
        """(value or MISSING, current tag versions) from one ``get_many`` answer."""
        versions = [found.get(k, 0) for k in self._tag_keys(tags)]
        record = found.get(self._key("v", key))
        if isinstance(record, tuple) and len(record) == 2 and list(record[1]) == versions:
            return record[0], versions
        return MISSING, versions

    def _reading_keys(self, key: str, tags: Sequence[str]) -> list[str]:
        return [self._key("v", key), *self._tag_keys(tags)]

    def _check_reentry(self, key: str) -> frozenset[tuple[int, str]]:
        computing = _computing.get()
        if (id(self), key) in computing:
            raise ReentrantCallError(f"the creator of {key!r} asked for {key!r} itself")
        return computing

    def _join(self, key: str) -> tuple[_Flight, bool]:
        """The flight of ``key`` and whether this caller leads it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                self._stats.coalesced += 1
                return flight, False
            flight = self._flights[key] = _Flight()
            return flight, True

    def _land(self, key: str, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.done.set()

    def _stop_write_backs(self, key: str | None) -> None:
        with self._lock:
            flights = self._flights.values() if key is None else [self._flights.get(key)]
            for flight in flights:
                if flight is not None:
                    flight.write_back = False

    def _wait_step(self, attempt: int) -> float:
        return float(min(0.25, self.poll_interval * (2**attempt)))

    # --------------------------------------------------------- async API

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await sync_to_async(getattr(self.backend, name), thread_sensitive=False)(
                *args, **kwargs
            )
        except Exception as exc:
            self._stats.backend_errors += 1
            raise CacheBackendError(f"Django cache {self.alias!r}: {name} failed: {exc}") from exc

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
        if stale_ttl is not None:
            raise ConfigurationError("DjangoCacheAdapter does not serve stale values (stale_ttl)")
        computing = self._check_reentry(key)
        # Callers of one key in this process share one read and, on a miss, one computation.
        flight, leader = self._join(key)
        if leader:
            loop = asyncio.get_running_loop()
            flight.future = loop.create_future()
            context = contextvars.copy_context()
            context.run(_computing.set, computing | {(id(self), key)})
            task = loop.create_task(self._lead(key, creator, ttl, tags, flight), context=context)
            # Held until done: a computation outlives a cancelled first caller.
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)
        elif flight.future is None or flight.future.get_loop() is not asyncio.get_running_loop():
            # Led by a thread or another loop: wait for it without blocking this loop.
            await asyncio.get_running_loop().run_in_executor(None, flight.done.wait)
            if flight.error is not None:
                raise flight.error
            return flight.value
        assert flight.future is not None
        return await asyncio.shield(flight.future)

    async def _lead(
        self,
        key: str,
        creator: Callable[[], Any],
        ttl: float | None,
        tags: Sequence[str],
        flight: _Flight,
    ) -> None:
        assert flight.future is not None
        try:
            value = await self._compute_or_wait(key, creator, ttl, tags, flight)
        except BaseException as exc:
            flight.error = exc
            flight.future.set_exception(exc)
            flight.future.exception()  # retrieved: waiters may all have gone
        else:
            flight.value = value
            flight.future.set_result(value)
        finally:
            self._land(key, flight)

    async def _compute_or_wait(
        self,
        key: str,
        creator: Callable[[], Any],
        ttl: float | None,
        tags: Sequence[str],
        flight: _Flight,
    ) -> Any:
        if ttl == 0:
            return await self._run_creator(creator)
        value, _ = self._read(
            key, tags, await self._call("get_many", self._reading_keys(key, tags))
        )
        if value is not MISSING:
            self._stats.hits += 1
            return value
        lease_key, token = self._key("l", key), secrets.token_hex(8)
        attempt = 0
        while True:
            if await self._call("add", lease_key, token, self._timeout(self.lock_timeout)):
                break
            # Another process computes: wait for its value, or for its lease to end.
            self._stats.lock_waits += 1
            await asyncio.sleep(self._wait_step(attempt))
            attempt += 1
            found = await self._call("get_many", self._reading_keys(key, tags))
            value, _ = self._read(key, tags, found)
            if value is not MISSING:
                self._stats.hits += 1
                return value
        try:
            found = await self._call("get_many", self._tag_keys(tags))
            versions = [found.get(k, 0) for k in self._tag_keys(tags)]
            value = await self._run_creator(creator)
            if flight.write_back and await self._call("get", lease_key) == token:
                await self._call("set", self._key("v", key), (value, versions), self._timeout(ttl))
                self._remember(key)
            return value
        finally:
            await self._call("delete", lease_key)

    async def _run_creator(self, creator: Callable[[], Any]) -> Any:
        self._stats.misses += 1
        self._stats.creator_calls += 1
        started = time.perf_counter()
        try:
            value = creator()
            if inspect.isawaitable(value):
                value = await value
            return value
        except BaseException:
            self._stats.creator_errors += 1
            raise
        finally:
            self._stats.creator_time_total += time.perf_counter() - started

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        found = await self._call("get_many", self._reading_keys(key, tags))
        value, _ = self._read(key, tags, found)
        if value is MISSING:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return value

    async def set(
        self, key: str, value: Any, ttl_seconds: Any = MISSING, *, tags: Sequence[str] = ()
    ) -> None:
        ttl = self._ttl(ttl_seconds)
        if ttl == 0:
            return
        found = await self._call("get_many", self._tag_keys(tags))
        versions = [found.get(k, 0) for k in self._tag_keys(tags)]
        await self._call("set", self._key("v", key), (value, versions), self._timeout(ttl))
        self._remember(key)

    async def invalidate(self, key: str) -> bool:
        self._stop_write_backs(key)
        await self._call("delete", self._key("l", key))
        existed = bool(await self._call("delete", self._key("v", key)))
        with self._lock:
            self._recent.pop(key, None)
        return existed

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._call(
            "set_many", {self._key("t", tag): secrets.token_hex(8) for tag in tags}, None
        )

    async def clear(self) -> None:
        self._stop_write_backs(None)
        await self.invalidate_tags([_ALL])
        with self._lock:
            self._recent.clear()

    def get_stats(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._recent)
        return self._stats.as_dict(size=None, keys=keys)

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync


class _BlockingDjangoCache(SyncCacheAdapter):
    """The blocking twin: the same keys, statistics and flights, with blocking Django calls."""

    _adapter: DjangoCacheAdapter

    def __init__(self, adapter: DjangoCacheAdapter) -> None:
        self._adapter = adapter

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        a = self._adapter
        try:
            return getattr(a.backend, name)(*args, **kwargs)
        except Exception as exc:
            a._stats.backend_errors += 1
            raise CacheBackendError(f"Django cache {a.alias!r}: {name} failed: {exc}") from exc

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
        if stale_ttl is not None:
            raise ConfigurationError("DjangoCacheAdapter does not serve stale values (stale_ttl)")
        computing = a._check_reentry(key)
        flight, leader = a._join(key)
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        token = _computing.set(computing | {(id(a), key)})
        try:
            flight.value = self._compute_or_wait(key, creator, ttl, tags, flight)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            _computing.reset(token)
            a._land(key, flight)

    def _compute_or_wait(
        self,
        key: str,
        creator: Callable[[], Any],
        ttl: float | None,
        tags: Sequence[str],
        flight: _Flight,
    ) -> Any:
        a = self._adapter
        if ttl == 0:
            return self._run_creator(creator)
        value, _ = a._read(key, tags, self._call("get_many", a._reading_keys(key, tags)))
        if value is not MISSING:
            a._stats.hits += 1
            return value
        lease_key, token = a._key("l", key), secrets.token_hex(8)
        attempt = 0
        while not self._call("add", lease_key, token, a._timeout(a.lock_timeout)):
            a._stats.lock_waits += 1
            time.sleep(a._wait_step(attempt))
            attempt += 1
            value, _ = a._read(key, tags, self._call("get_many", a._reading_keys(key, tags)))
            if value is not MISSING:
                a._stats.hits += 1
                return value
        try:
            found = self._call("get_many", a._tag_keys(tags))
            versions = [found.get(k, 0) for k in a._tag_keys(tags)]
            value = self._run_creator(creator)
            if flight.write_back and self._call("get", lease_key) == token:
                self._call("set", a._key("v", key), (value, versions), a._timeout(ttl))
                a._remember(key)
            return value
        finally:
            self._call("delete", lease_key)

    def _run_creator(self, creator: Callable[[], Any]) -> Any:
        stats = self._adapter._stats
        stats.misses += 1
        stats.creator_calls += 1
        started = time.perf_counter()
        try:
            value = creator()
            if inspect.isawaitable(value):
                raise ConfigurationError(
                    "the blocking twin got an async creator; await the adapter's get_or_create"
                )
            return value
        except BaseException:
            stats.creator_errors += 1
            raise
        finally:
            stats.creator_time_total += time.perf_counter() - started

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        a = self._adapter
        value, _ = a._read(key, tags, self._call("get_many", a._reading_keys(key, tags)))
        if value is MISSING:
            a._stats.misses += 1
            return default
        a._stats.hits += 1
        return value

    def set(
        self, key: str, value: Any, ttl_seconds: Any = MISSING, *, tags: Sequence[str] = ()
    ) -> None:
        a = self._adapter
        ttl = a._ttl(ttl_seconds)
        if ttl == 0:
            return
        found = self._call("get_many", a._tag_keys(tags))
        versions = [found.get(k, 0) for k in a._tag_keys(tags)]
        self._call("set", a._key("v", key), (value, versions), a._timeout(ttl))
        a._remember(key)

    def invalidate(self, key: str) -> bool:
        a = self._adapter
        a._stop_write_backs(key)
        self._call("delete", a._key("l", key))
        existed = bool(self._call("delete", a._key("v", key)))
        with a._lock:
            a._recent.pop(key, None)
        return existed

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        a = self._adapter
        self._call("set_many", {a._key("t", tag): secrets.token_hex(8) for tag in tags}, None)

    def clear(self) -> None:
        a = self._adapter
        a._stop_write_backs(None)
        self.invalidate_tags([_ALL])
        with a._lock:
            a._recent.clear()
