"""`RedisCacheAdapter`: a cache shared by every process, with a lease so one caller computes."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from cachewire.cache._base import (
    MISSING,
    BaseCacheAdapter,
    Creator,
    SyncCacheAdapter,
    _Missing,
    validate_ttl,
)
from cachewire.cache._codec import Codec, JsonCodec
from cachewire.cache._keys import escape
from cachewire.cache._stats import CacheStats
from cachewire.errors import CacheBackendError, ConfigurationError, ReentrantCallError

__all__ = ["RedisCacheAdapter"]

T = TypeVar("T")

_BACKEND_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_computing: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "cachewire_redis_computing", default=frozenset()
)

# Stored value: "<soft expiry, server ms; 0 = none>\n<codec>\n<tag versions csv>\n<payload>".
# KEYS: value, lock, epoch, tag keys...  ARGV: token, lock_ms, lease (0/1)
_READ = """
local raw = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local versions = {}
for i = 4, #KEYS do versions[#versions + 1] = redis.call('GET', KEYS[i]) or '0' end
local current = table.concat(versions, ',')
local epoch = redis.call('GET', KEYS[3]) or '0'
local state, payload, codec = 'miss', false, false
if raw then
  local a = string.find(raw, '\\n', 1, true)
  local b = string.find(raw, '\\n', a + 1, true)
  local c = string.find(raw, '\\n', b + 1, true)
  local soft = tonumber(string.sub(raw, 1, a - 1))
  codec = string.sub(raw, a + 1, b - 1)
  if string.sub(raw, b + 1, c - 1) == current then
    payload = string.sub(raw, c + 1)
    if soft == 0 or soft > now then
      return {'hit', payload, 0, epoch, current, codec}
    end
    state = 'stale'
  end
end
local won = 0
if ARGV[3] == '1' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then won = 1 end
return {state, payload, won, epoch, current, codec}
"""

# KEYS: value, lock, epoch, tag keys...
# ARGV: token ('' = no lease check), epoch at start ('' = no check), versions csv ('' = read now),
#       codec, payload, ttl_ms (-1 = none), stale_ms
_WRITE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then
  redis.call('DEL', KEYS[2])
  return 0
end
local versions = ARGV[3]
if #KEYS > 3 and versions == '' then
  local v = {}
  for i = 4, #KEYS do v[#v + 1] = redis.call('GET', KEYS[i]) or '0' end
  versions = table.concat(v, ',')
end
local ttl = tonumber(ARGV[6])
local soft = 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl >= 0 then soft = now + ttl end
local raw = soft .. '\\n' .. ARGV[4] .. '\\n' .. versions .. '\\n' .. ARGV[5]
if ttl >= 0 then
  redis.call('SET', KEYS[1], raw, 'PX', ttl + tonumber(ARGV[7]))
else
  redis.call('SET', KEYS[1], raw)
end
if ARGV[1] ~= '' then redis.call('DEL', KEYS[2]) end
return 1
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCacheAdapter(BaseCacheAdapter):
    """A Redis cache with one computation per key across every process.

    Values, locks and tag versions live in separate namespaces under ``namespace`` that no user key
    can reach. A hit is one round trip (one script); a miss takes a lease, computes, and publishes
    only while it still owns the lease and nothing invalidated the key meanwhile. Waiters back off
    (5 ms doubling to 100 ms) for as long as the lease lives, then take over.

    ``fail_open`` (default): when Redis cannot be reached, callers compute and the error is
    counted in ``backend_errors``; with ``fail_open=False`` they get `CacheBackendError`.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        sync_client: redis.Redis | None = None,
        default_ttl: float | None = 3600,
        lock_timeout: float = 10,
        namespace: str = "cachewire",
        codec: Codec | None = None,
        stale_ttl: float | None = None,
        fail_open: bool = True,
    ) -> None:
        if redis_url is None and client is None:
            raise ConfigurationError("RedisCacheAdapter needs redis_url= or client=")
        if lock_timeout <= 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        self.redis_url = redis_url
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        self.stale_ttl = validate_ttl(stale_ttl, name="stale_ttl") or 0.0
        self.lock_timeout = float(lock_timeout)
        self.fail_open = fail_open
        self.codec: Codec = codec or JsonCodec()
        self._ns = escape(namespace)
        self._client = client or aioredis.Redis.from_url(redis_url)  # type: ignore[arg-type]
        self._sync_client = sync_client or (
            redis.Redis.from_url(redis_url) if redis_url is not None else None
        )
        self._stats = CacheStats()
        self._local: dict[str, asyncio.Future[Any]] = {}
        self._tokens = itertools.count()
        self._scripts: dict[str, Any] = {}
        self._sync = _SyncRedis(self)

    # ------------------------------------------------------------------ keys

    def _value_key(self, key: str) -> str:
        return f"{self._ns}:v:{escape(key)}"

    def _lock_key(self, key: str) -> str:
        return f"{self._ns}:l:{escape(key)}"

    def _tag_key(self, tag: str) -> str:
        return f"{self._ns}:t:{escape(tag)}"

    def _keys(self, key: str, tags: Sequence[str]) -> list[str]:
        return [
            self._value_key(key),
            self._lock_key(key),
            f"{self._ns}:epoch",
            *(self._tag_key(t) for t in tags),
        ]

    def _ttl_ms(self, ttl_seconds: float | _Missing | None) -> tuple[float | None, int]:
        ttl = self.default_ttl if isinstance(ttl_seconds, _Missing) else validate_ttl(ttl_seconds)
        return ttl, (-1 if ttl is None else max(1, round(ttl * 1000)))

    def _token(self) -> str:
        return f"{secrets.token_hex(8)}-{next(self._tokens)}"

    def _check_reentry(self, key: str) -> None:
        if (id(self), key) in _computing.get():
            raise ReentrantCallError(
                f"the creator of cache key {key!r} asked the cache for that same key; "
                "it would wait for itself forever"
            )

    def _backend_failed(self, exc: BaseException) -> None:
        self._stats.backend_errors += 1
        if not self.fail_open:
            raise CacheBackendError(f"Redis at {self.redis_url} failed: {exc}") from exc

    def _encode(self, value: Any) -> bytes:
        return self.codec.encode(value)

    def _decode(self, codec: Any, payload: Any) -> Any:
        if codec is not None and codec.decode() != self.codec.codec_id:
            return MISSING  # written by another codec: a clean miss
        return self.codec.decode(payload)

    # ----------------------------------------------------------------- async

    async def _script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client.register_script(source)
        return await script(keys=keys, args=args)

    async def get_or_create(
        self,
        key: str,
        creator: Creator,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> Any:
        ttl, ttl_ms = self._ttl_ms(ttl_seconds)
        self._check_reentry(key)
        pending = self._local.get(key)
        if pending is not None:
            self._stats.coalesced += 1
            return await asyncio.shield(pending)
        # The computation belongs to the cache, so cancelling one caller cancels nobody else.
        task = asyncio.get_running_loop().create_task(
            self._get_or_create(key, creator, ttl, ttl_ms, tags, stale_ttl)
        )
        self._local[key] = task
        task.add_done_callback(functools.partial(self._flight_done, key))
        return await asyncio.shield(task)

    def _flight_done(self, key: str, task: asyncio.Future[Any]) -> None:
        if self._local.get(key) is task:
            del self._local[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter re-raises it

    async def _get_or_create(
        self,
        key: str,
        creator: Creator,
        ttl: float | None,
        ttl_ms: int,
        tags: Sequence[str],
        stale_ttl: float | None,
    ) -> Any:
        keys = self._keys(key, tags)
        token = self._token()
        lock_ms = round(self.lock_timeout * 1000)
        delay = 0.005
        waited = False
        while True:
            try:
                state, payload, won, epoch, versions, codec = await self._script(
                    _READ, keys, [token, lock_ms, 1]
                )
            except _BACKEND_ERRORS as exc:
                self._backend_failed(exc)
                return await self._run_creator(key, creator)
            state = state.decode()
            if state == "hit":
                value = self._decode(codec, payload)
                if value is not MISSING:
                    self._stats.hits += 1
                    return value
            if state == "stale" and (stale_ttl is None or stale_ttl > 0) and not won:
                self._stats.stale_hits += 1
                return self._decode(codec, payload)
            if won:
                break
            if not waited:
                self._stats.lock_waits += 1
                waited = True
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 0.1)
        heartbeat = asyncio.create_task(self._heartbeat(keys[1], token, lock_ms))
        try:
            value = await self._run_creator(key, creator)
        except BaseException:
            heartbeat.cancel()
            await self._release(keys[1], token)
            raise
        heartbeat.cancel()
        try:
            data = self._encode(value)
        except BaseException:
            await self._release(keys[1], token)
            raise
        if ttl == 0:
            await self._release(keys[1], token)
            return value
        try:
            written = await self._script(
                _WRITE,
                keys,
                [
                    token,
                    epoch,
                    versions,
                    self.codec.codec_id,
                    data,
                    ttl_ms,
                    round(self.stale_ttl * 1000),
                ],
            )
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)
            return value
        if not written:
            self._stats.writes_rejected += 1
        return value

    async def _release(self, lock_key: str, token: str) -> None:
        # A lease that cannot be released expires by itself; the caller's outcome stands.
        try:
            await self._script(_RELEASE, [lock_key], [token])
        except _BACKEND_ERRORS:
            self._stats.backend_errors += 1

    async def _heartbeat(self, lock_key: str, token: str, lock_ms: int) -> None:
        while True:
            await asyncio.sleep(lock_ms / 3000)
            try:
                if not await self._script(_EXTEND, [lock_key], [token, lock_ms]):
                    self._stats.lock_lost += 1
                    return
            except _BACKEND_ERRORS:
                self._stats.backend_errors += 1

    async def _run_creator(self, key: str, creator: Creator) -> Any:
        token = _computing.set(_computing.get() | {(id(self), key)})
        self._stats.misses += 1
        self._stats.creator_calls += 1
        started = time.monotonic()
        try:
            value = creator()
            if inspect.isawaitable(value):
                value = await value
            return value
        except BaseException:
            self._stats.creator_errors += 1
            raise
        finally:
            self._stats.creator_time_total += time.monotonic() - started
            _computing.reset(token)

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        try:
            state, payload, _, _, _, codec = await self._script(
                _READ, self._keys(key, tags), ["", 1, 0]
            )
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)
            return default
        if state == b"hit":
            value = self._decode(codec, payload)
            if value is not MISSING:
                self._stats.hits += 1
                return value
        self._stats.misses += 1
        return default

    async def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        ttl, ttl_ms = self._ttl_ms(ttl_seconds)
        data = self._encode(value)
        if ttl == 0:
            return
        try:
            await self._script(
                _WRITE,
                self._keys(key, tags),
                ["", "", "", self.codec.codec_id, data, ttl_ms, round(self.stale_ttl * 1000)],
            )
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)

    async def invalidate(self, key: str) -> bool:
        try:
            removed = await self._client.delete(self._value_key(key))
            # Dropping the lease fences a computation in flight: its write-back is refused.
            await self._client.delete(self._lock_key(key))
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)
            return False
        return bool(removed)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.incr(self._tag_key(tag))
                await pipe.execute()
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)

    async def clear(self) -> None:
        try:
            await self._client.incr(f"{self._ns}:epoch")
            for kind in ("v", "l"):
                batch: list[Any] = []
                async for name in self._client.scan_iter(match=f"{self._ns}:{kind}:*", count=500):
                    batch.append(name)
                    if len(batch) >= 500:
                        await self._client.unlink(*batch)
                        batch = []
                if batch:
                    await self._client.unlink(*batch)
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)

    def get_stats(self) -> dict[str, Any]:
        return self._stats.as_dict(size=None, keys=None)

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()
        if self._sync_client is not None:
            self._sync_client.close()

    async def __aenter__(self) -> RedisCacheAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _SyncRedis(SyncCacheAdapter):
    """Blocking twin of `RedisCacheAdapter` on a blocking redis-py client."""

    def __init__(self, adapter: RedisCacheAdapter) -> None:
        self._adapter = adapter
        self._cache = adapter
        self._scripts: dict[str, Any] = {}

    def _client(self) -> redis.Redis:
        if self._cache._sync_client is None:
            raise ConfigurationError(
                "the blocking twin needs redis_url= or sync_client= on RedisCacheAdapter"
            )
        return self._cache._sync_client

    def _script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client().register_script(source)
        return script(keys=keys, args=args)

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
        ttl, ttl_ms = cache._ttl_ms(ttl_seconds)
        cache._check_reentry(key)
        keys = cache._keys(key, tags)
        token = cache._token()
        lock_ms = round(cache.lock_timeout * 1000)
        delay = 0.005
        while True:
            try:
                state, payload, won, epoch, versions, codec = self._script(
                    _READ, keys, [token, lock_ms, 1]
                )
            except _BACKEND_ERRORS as exc:
                cache._backend_failed(exc)
                return self._run(key, creator)
            if state == b"hit":
                value = cache._decode(codec, payload)
                if value is not MISSING:
                    cache._stats.hits += 1
                    return value  # type: ignore[no-any-return]
            if state == b"stale" and (stale_ttl is None or stale_ttl > 0) and not won:
                cache._stats.stale_hits += 1
                return cache._decode(codec, payload)  # type: ignore[no-any-return]
            if won:
                break
            if delay == 0.005:
                cache._stats.coalesced += 1  # waiting for another thread's or process's value
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 0.1)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(keys[1], token, lock_ms, stop), daemon=True
        )
        beat.start()
        try:
            value = self._run(key, creator)
        except BaseException:
            stop.set()
            self._release(keys[1], token)
            raise
        stop.set()
        try:
            data = cache._encode(value)
        except BaseException:
            self._release(keys[1], token)
            raise
        if ttl == 0:
            self._release(keys[1], token)
            return value
        try:
            written = self._script(
                _WRITE,
                keys,
                [
                    token,
                    epoch,
                    versions,
                    cache.codec.codec_id,
                    data,
                    ttl_ms,
                    round(cache.stale_ttl * 1000),
                ],
            )
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return value
        if not written:
            cache._stats.writes_rejected += 1
        return value

    def _release(self, lock_key: str, token: str) -> None:
        try:
            self._script(_RELEASE, [lock_key], [token])
        except _BACKEND_ERRORS:
            self._cache._stats.backend_errors += 1

    def _heartbeat(self, lock_key: str, token: str, lock_ms: int, stop: threading.Event) -> None:
        while not stop.wait(lock_ms / 3000):
            try:
                if not self._script(_EXTEND, [lock_key], [token, lock_ms]):
                    self._cache._stats.lock_lost += 1
                    return
            except _BACKEND_ERRORS:
                self._cache._stats.backend_errors += 1

    def _run(self, key: str, creator: Callable[[], T]) -> T:
        cache = self._cache
        token = _computing.set(_computing.get() | {(id(cache), key)})
        cache._stats.misses += 1
        cache._stats.creator_calls += 1
        try:
            return creator()
        except BaseException:
            cache._stats.creator_errors += 1
            raise
        finally:
            _computing.reset(token)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        cache = self._cache
        try:
            state, payload, _, _, _, codec = self._script(_READ, cache._keys(key, tags), ["", 1, 0])
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return default
        if state == b"hit":
            value = cache._decode(codec, payload)
            if value is not MISSING:
                cache._stats.hits += 1
                return value
        cache._stats.misses += 1
        return default

    def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        cache = self._cache
        ttl, ttl_ms = cache._ttl_ms(ttl_seconds)
        data = cache._encode(value)
        if ttl == 0:
            return
        try:
            self._script(
                _WRITE,
                cache._keys(key, tags),
                ["", "", "", cache.codec.codec_id, data, ttl_ms, round(cache.stale_ttl * 1000)],
            )
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)

    def invalidate(self, key: str) -> bool:
        cache = self._cache
        try:
            removed = self._client().delete(cache._value_key(key))
            self._client().delete(cache._lock_key(key))
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return False
        return bool(removed)

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        cache = self._cache
        try:
            with self._client().pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.incr(cache._tag_key(tag))
                pipe.execute()
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)

    def clear(self) -> None:
        cache = self._cache
        client = self._client()
        try:
            client.incr(f"{cache._ns}:epoch")
            for kind in ("v", "l"):
                names = list(client.scan_iter(match=f"{cache._ns}:{kind}:*", count=500))
                for start in range(0, len(names), 500):
                    client.unlink(*names[start : start + 500])
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
