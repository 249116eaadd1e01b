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
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import caches

from cachewire.cache import MISSING, BaseCacheAdapter, CacheStats, SyncCacheAdapter, validate_ttl
from cachewire.errors import CacheBackendError, ConfigurationError, ReentrantCallError

__all__ = ["DjangoCacheAdapter"]

T = TypeVar("T")
_KEYS_REPORTED = 100
_ALL = "*"  # the tag every entry carries; `clear()` bumps it
_CREATE: Any = object()  # a step: run the creator
_SLEEP: Any = object()  # a step: (_SLEEP, seconds)
#: A generator of steps; what each step produced is sent back into it.
Steps = Generator[Any, Any, Any]
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

    # ------------------------------------------ the work, shared by both twins
    #
    # Each operation is a generator of steps: a backend call ``(method, *args)``, ``_CREATE``
    # (run the creator) or ``(_SLEEP, seconds)``. The async adapter and its blocking twin drive
    # the same generators and differ only in how they perform a step.

    def _creation(self) -> Steps:
        stats = self._stats
        stats.misses += 1
        stats.creator_calls += 1
        started = time.perf_counter()
        try:
            return (yield _CREATE)
        except BaseException:
            stats.creator_errors += 1
            raise
        finally:
            stats.creator_time_total += time.perf_counter() - started

    def _lead_steps(
        self, key: str, ttl: float | None, tags: Sequence[str], flight: _Flight
    ) -> Steps:
        """Read ``key``; on a miss take the lease (or wait for whoever holds it), compute and
        store, unless the key was invalidated meanwhile."""
        if ttl == 0:
            return (yield from self._creation())
        value, _ = self._read(key, tags, (yield ("get_many", self._reading_keys(key, tags))))
        if value is not MISSING:
            self._stats.hits += 1
            return value
        lease_key, token = self._key("l", key), secrets.token_hex(8)
        attempt = 0
        while not (yield ("add", lease_key, token, self._timeout(self.lock_timeout))):
            # Another process computes: wait for its value, or for its lease to end.
            self._stats.lock_waits += 1
            yield (_SLEEP, self._wait_step(attempt))
            attempt += 1
            found = yield ("get_many", self._reading_keys(key, tags))
            value, _ = self._read(key, tags, found)
            if value is not MISSING:
                self._stats.hits += 1
                return value
        try:
            if attempt:
                # The holder we waited for may have stored its value just before it gave the
                # lease up: look once more before computing again.
                value, _ = self._read(
                    key, tags, (yield ("get_many", self._reading_keys(key, tags)))
                )
                if value is not MISSING:
                    self._stats.hits += 1
                    return value
            _, versions = self._read(key, tags, (yield ("get_many", self._tag_keys(tags))))
            value = yield from self._creation()
            if flight.write_back and (yield ("get", lease_key)) == token:
                yield ("set", self._key("v", key), (value, versions), self._timeout(ttl))
                self._remember(key)
            return value
        finally:
            yield ("delete", lease_key)

    def _get_steps(self, key: str, default: Any, tags: Sequence[str]) -> Steps:
        value, _ = self._read(key, tags, (yield ("get_many", self._reading_keys(key, tags))))
        if value is MISSING:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return value

    def _set_steps(self, key: str, value: Any, ttl_seconds: Any, tags: Sequence[str]) -> Steps:
        ttl = self._ttl(ttl_seconds)
        if ttl == 0:
            return None
        _, versions = self._read(key, tags, (yield ("get_many", self._tag_keys(tags))))
        yield ("set", self._key("v", key), (value, versions), self._timeout(ttl))
        self._remember(key)
        return None

    def _invalidate_steps(self, key: str) -> Steps:
        self._stop_write_backs(key)
        yield ("delete", self._key("l", key))
        existed = bool((yield ("delete", self._key("v", key))))
        with self._lock:
            self._recent.pop(key, None)
        return existed

    def _invalidate_tags_steps(self, tags: Sequence[str]) -> Steps:
        yield ("set_many", {self._key("t", tag): secrets.token_hex(8) for tag in tags}, None)
        return None

    def _clear_steps(self) -> Steps:
        self._stop_write_backs(None)
        yield from self._invalidate_tags_steps([_ALL])
        with self._lock:
            self._recent.clear()
        return None

    def _failed(self, name: str, exc: Exception) -> CacheBackendError:
        self._stats.backend_errors += 1
        return CacheBackendError(f"Django cache {self.alias!r}: {name} failed: {exc}")

    # --------------------------------------------------------- async API

    async def _drive(self, steps: Steps, creator: Callable[[], Any] | None = None) -> Any:
        """Perform the steps with the event loop free: backend calls on a thread."""
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.throw(error) if error is not None else steps.send(result)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                if step is _CREATE:
                    assert creator is not None
                    result = creator()
                    if inspect.isawaitable(result):
                        result = await result
                elif step[0] is _SLEEP:
                    await asyncio.sleep(step[1])
                else:
                    method = getattr(self.backend, step[0])
                    try:
                        result = await sync_to_async(method, thread_sensitive=False)(*step[1:])
                    except Exception as exc:
                        raise self._failed(step[0], exc) from exc
            except BaseException as exc:
                error = exc

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
            value = await self._drive(self._lead_steps(key, ttl, tags, flight), creator)
        except BaseException as exc:
            flight.error = exc
            flight.future.set_exception(exc)
            flight.future.exception()  # retrieved: waiters may all have gone
        else:
            flight.value = value
            flight.future.set_result(value)
        finally:
            self._land(key, flight)

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        return await self._drive(self._get_steps(key, default, tags))

    async def set(
        self, key: str, value: Any, ttl_seconds: Any = MISSING, *, tags: Sequence[str] = ()
    ) -> None:
        await self._drive(self._set_steps(key, value, ttl_seconds, tags))

    async def invalidate(self, key: str) -> bool:
        return bool(await self._drive(self._invalidate_steps(key)))

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._drive(self._invalidate_tags_steps(tags))

    async def clear(self) -> None:
        await self._drive(self._clear_steps())

    def get_stats(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._recent)
        return self._stats.as_dict(size=None, keys=keys)

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync


class _BlockingDjangoCache(SyncCacheAdapter):
    """The blocking twin: the adapter's own steps, performed with blocking calls."""

    _adapter: DjangoCacheAdapter

    def __init__(self, adapter: DjangoCacheAdapter) -> None:
        self._adapter = adapter

    def _drive(self, steps: Steps, creator: Callable[[], Any] | None = None) -> Any:
        adapter = self._adapter
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.throw(error) if error is not None else steps.send(result)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                if step is _CREATE:
                    assert creator is not None
                    result = creator()
                    if inspect.isawaitable(result):
                        raise ConfigurationError(
                            "the blocking twin got an async creator; await the adapter's "
                            "get_or_create instead"
                        )
                elif step[0] is _SLEEP:
                    time.sleep(step[1])
                else:
                    try:
                        result = getattr(adapter.backend, step[0])(*step[1:])
                    except Exception as exc:
                        raise adapter._failed(step[0], exc) from exc
            except BaseException as exc:
                error = exc

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
            flight.value = self._drive(a._lead_steps(key, ttl, tags, flight), creator)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            _computing.reset(token)
            a._land(key, flight)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        return self._drive(self._adapter._get_steps(key, default, tags))

    def set(
        self, key: str, value: Any, ttl_seconds: Any = MISSING, *, tags: Sequence[str] = ()
    ) -> None:
        self._drive(self._adapter._set_steps(key, value, ttl_seconds, tags))

    def invalidate(self, key: str) -> bool:
        return bool(self._drive(self._adapter._invalidate_steps(key)))

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        self._drive(self._adapter._invalidate_tags_steps(tags))

    def clear(self) -> None:
        self._drive(self._adapter._clear_steps())
