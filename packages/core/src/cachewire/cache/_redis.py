"""`RedisCacheAdapter`: a cache shared by every process, with a lease so one caller computes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import hashlib
import inspect
import itertools
import logging
import math
import os
import random
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, cast

import attrs
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
logger = logging.getLogger("cachewire.cache")

_BACKEND_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_computing: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "cachewire_redis_computing", default=frozenset()
)
_CODEC_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Hits repeat their keys and tags, and escaping one costs more than the rest of a hit's Python
# work: the escaped forms of recent ones are kept.
_escaped = functools.lru_cache(maxsize=4096)(escape)

# A stored record is "<soft expiry, server ms; 0 = none>\n<creator ms>\n<codec>\n<tag versions>\n
# <payload>"; Redis drops it stale_ttl after the soft expiry.
#
# _READ, KEYS: value, tag keys... (the lease and the epoch are found from the namespace)
#   ARGV[1]: lease token ('' = read only), ARGV[2]: '1' = ignore the stored value,
#   ARGV[3]: early refresh draw (XFetch: the record counts as due when now + creator ms * draw
#   reaches its soft expiry; absent = off).
# Reply: a fresh, current record as it is stored (it starts with a digit), else
#   "<state><won>\n<epoch>\n<tag versions>\n<record or nothing>", state m (miss), s (stale:
#   past its soft expiry), e (due for an early refresh), won 1 when this call took the lease.
_READ = """
local raw = ARGV[2] ~= '1' and redis.call('GET', KEYS[1])
local versions = ''
if #KEYS > 1 then
  local v = {}
  for i = 2, #KEYS do v[#v + 1] = redis.call('GET', KEYS[i]) or '0' end
  versions = table.concat(v, ',')
end
local state = 'm'
if raw then
  local a = string.find(raw, '\\n', 1, true)
  local b = a and string.find(raw, '\\n', a + 1, true)
  local c = b and string.find(raw, '\\n', b + 1, true)
  local d = c and string.find(raw, '\\n', c + 1, true)
  local soft = d and tonumber(string.sub(raw, 1, a - 1))
  local took = d and tonumber(string.sub(raw, a + 1, b - 1))
  if soft and took and string.sub(raw, b + 1, c - 1) == '@CODEC@'
      and string.sub(raw, c + 1, d - 1) == versions then
    if soft == 0 then return raw end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if soft > now then
      local due = ARGV[3] and now + took * tonumber(ARGV[3])
      if not due or due < soft then return raw end
      state = 'e'
    else
      state = 's'
    end
  else
    raw = false
  end
end
local won = '0'
if ARGV[1] ~= '' then
  local lock = '@NS@:l:' .. string.sub(KEYS[1], @TAIL@)
  if redis.call('SET', lock, ARGV[1], 'NX', 'PX', @LOCK_MS@) then won = '1' end
end
local epoch = redis.call('GET', '@NS@:epoch') or '0'
return state .. won .. '\\n' .. epoch .. '\\n' .. versions .. '\\n' .. (raw or '')
"""

# KEYS: value, lock, epoch, tag keys...
# ARGV: token ('' = no lease check), epoch at start ('' = no check), versions ('' = read now),
#       codec, payload, ttl_ms (-1 = none), stale_ms, creator ms
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
if ttl >= 0 then
  local t = redis.call('TIME')
  soft = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
end
local raw = soft .. '\\n' .. ARGV[8] .. '\\n' .. ARGV[4] .. '\\n' .. versions .. '\\n' .. ARGV[5]
if ttl >= 0 then
  redis.call('SET', KEYS[1], raw, 'PX', ttl + tonumber(ARGV[7]))
else
  redis.call('SET', KEYS[1], raw)
end
if ARGV[1] ~= '' then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', KEYS[3] .. ':wake', KEYS[2])  -- waiters of this lease may stop waiting
end
return 1
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lock; ARGV: token, wake-up channel
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
"""

# KEYS: value, lock. Deleting the lease too fences a computation in flight.
_INVALIDATE = """
local removed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
return removed
"""


@attrs.frozen
class _Read:
    """A read that was not a plain hit."""

    state: str  # "m" miss, "s" stale, "e" due for an early refresh
    won: bool
    epoch: bytes
    versions: bytes
    record: bytes


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_WRITE_SHA, _EXTEND_SHA, _RELEASE_SHA, _INVALIDATE_SHA = map(
    _sha, (_WRITE, _EXTEND, _RELEASE, _INVALIDATE)
)


def _parse(reply: bytes) -> _Read | bytes:
    """A fresh record, or what the read found otherwise."""
    if 48 <= reply[0] <= 57:
        return reply
    head, epoch, versions, record = reply.split(b"\n", 3)
    return _Read(chr(head[0]), head[1] == 49, epoch, versions, record)


def _versions(found: list[bytes | None]) -> bytes:
    return b",".join(version or b"0" for version in found)


def _payload(record: bytes) -> bytes:
    return record.split(b"\n", 4)[4]


class _Gate:
    """At most ``free`` commands in flight on one event loop; the others wait their turn.

    A semaphore whose uncontended path is two attribute operations: `asyncio.Semaphore` would cost
    an extra coroutine on every cache hit.
    """

    __slots__ = ("_waiters", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take(self) -> bool:
        """Take a slot if one is free and nobody is waiting for one."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait until a slot is handed over."""
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over just as this caller was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes straight to the next in line
                return
        self.free += 1

    async def __aenter__(self) -> None:
        if not self.take():
            await self.wait()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class _SyncGate:
    """At most ``size`` commands in flight from this process's threads; the others wait.

    `threading.BoundedSemaphore` runs a condition variable on every pass; here a free slot costs
    one lock, and the condition is used only while threads wait.
    """

    __slots__ = ("_free", "_lock", "_released", "_waiting")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting = 0
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)

    def __enter__(self) -> None:
        with self._lock:
            while self._free <= 0:
                self._waiting += 1
                try:
                    self._released.wait()
                finally:
                    self._waiting -= 1
            self._free -= 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._free += 1
            if self._waiting:
                self._released.notify()


class _Wakeups:
    """Callers of one event loop that wait for leases, woken through one subscription.

    Whoever publishes a value or gives a lease up announces the lease key on the namespace's
    channel. A wait still ends at its timeout, so a missed message (or no subscription at all)
    costs latency, never correctness.
    """

    def __init__(self, client: aioredis.Redis, channel: str, stats: CacheStats) -> None:
        self._client = client
        self._channel = channel
        self._stats = stats
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._sessions = 0
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Hold the subscription while a caller waits (across all of its pauses)."""
        self._sessions += 1
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            yield
        finally:
            self._sessions -= 1
            if not self._sessions and self._listener is not None:
                self._listener.cancel()  # nobody waits: give the connection back
                self._listener = None
                self.subscribed = asyncio.Event()

    async def wait(self, lock_key: str, timeout: float) -> None:
        """Until ``lock_key`` is announced, or ``timeout`` seconds; inside a `session`."""
        event = asyncio.Event()
        waiters = self._waiting.setdefault(lock_key, set())
        waiters.add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiting.pop(lock_key, None)

    async def stop(self) -> None:
        """End the subscription now (the adapter is closing); waits fall back to timeouts."""
        listener, self._listener = self._listener, None
        if listener is not None and listener.get_loop() is asyncio.get_running_loop():
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is None:
                    continue
                for event in self._waiting.get(message["data"].decode(), ()):
                    event.set()
        except _BACKEND_ERRORS:
            self._stats.backend_errors += 1  # the waits fall back to their timeouts
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]


class _Reading:
    """A caller's read of a key in progress; callers arriving meanwhile wait for its answer.

    The future they wait on is made by the first of them, so a read nobody waits for costs none.
    """

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None

    def waited(self) -> asyncio.Future[Any]:
        if self.future is None:
            self.future = asyncio.get_running_loop().create_future()
        return self.future


@attrs.define(slots=True)
class _Call:
    """One get_or_create that found no fresh value."""

    key: str
    creator: Creator
    keys: list[str]
    ttl: float | None
    ttl_ms: int
    stale_ttl: float | None


class RedisCacheAdapter(BaseCacheAdapter):
    """A Redis cache with one computation per key across every process.

    Values, locks and tag versions live in separate namespaces under ``namespace`` that no user key
    can reach. A hit is one plain GET (MGET with tag versions). A miss then runs one script that
    looks again and takes the lease, computes, and publishes with a second script, only while it
    still owns the lease and nothing invalidated the key meanwhile. Callers of a key in one process
    share one read, one computation or one wait;
    waiters back off (5 ms doubling to 100 ms) for as long as the lease lives, then take over.

    ``stale_ttl`` keeps a value that long past its TTL: one caller refreshes it in the background
    while the others are answered with it. ``early_refresh_beta`` turns on probabilistic early
    refresh (XFetch); ``jitter`` removes up to that fraction of each TTL at random.

    ``fail_open`` (default): when Redis cannot be reached, callers compute and the error is
    counted in ``backend_errors``; with ``fail_open=False`` they get `CacheBackendError`.
    """

    #: The first pause of a caller waiting for a lease, and the longest (it doubles in between).
    WAIT_FIRST = 0.005
    WAIT_MAX = 0.1
    #: The longest pause while the wake-up subscription is in place.
    WAIT_MAX_SUBSCRIBED = 0.5

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
        early_refresh_beta: float | None = None,
        jitter: float = 0.0,
        fail_open: bool = True,
        max_connections: int = 100,
    ) -> None:
        if redis_url is None and client is None:
            raise ConfigurationError("RedisCacheAdapter needs redis_url= or client=")
        if not lock_timeout > 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        if early_refresh_beta is not None and not early_refresh_beta > 0:
            raise ConfigurationError(
                f"early_refresh_beta must be > 0 (1.0 is the usual choice) or None, "
                f"got {early_refresh_beta!r}"
            )
        if not 0.0 <= jitter < 1.0:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")
        if isinstance(max_connections, bool) or not (
            isinstance(max_connections, int) and max_connections >= 1
        ):
            raise ConfigurationError(
                f"max_connections must be an int >= 1, got {max_connections!r}"
            )
        self.codec: Codec = codec or JsonCodec()
        if not _CODEC_ID.fullmatch(self.codec.codec_id):
            raise ConfigurationError(
                f"codec_id {self.codec.codec_id!r} of {type(self.codec).__name__} must be 1 to 64 "
                "characters of A-Z, a-z, 0-9, '_', '.', '-'"
            )
        for given in (client, sync_client):
            if given is not None and given.get_connection_kwargs().get("decode_responses"):
                raise ConfigurationError(
                    "RedisCacheAdapter needs a client that returns bytes: "
                    "create it with decode_responses=False"
                )
        self.redis_url = redis_url
        self.default_ttl = validate_ttl(default_ttl, name="default_ttl")
        self.stale_ttl = validate_ttl(stale_ttl, name="stale_ttl") or 0.0
        self.lock_timeout = float(lock_timeout)
        self.early_refresh_beta = early_refresh_beta
        self.jitter = jitter
        self.fail_open = fail_open
        self._ns = escape(namespace)
        self._client = client or aioredis.Redis.from_url(
            redis_url,  # type: ignore[arg-type]
            max_connections=max_connections,
        )
        self._sync_client = sync_client or (
            redis.Redis.from_url(redis_url, max_connections=max_connections)
            if redis_url is not None
            else None
        )
        # redis-py refuses a command outright when its pool is exhausted; callers beyond the
        # pool's size wait for a connection here instead (one gate per event loop).
        pool_size = min(
            max_connections, self._client.connection_pool.max_connections or max_connections
        )
        # One connection stays free for the wake-up subscription of waiting callers.
        self._max_connections = max(1, pool_size - 1)
        self._can_subscribe = pool_size > 1
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Gate] = (
            weakref.WeakKeyDictionary()
        )
        self._wake_channel = f"{self._ns}:epoch:wake"
        self._wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = (
            weakref.WeakKeyDictionary()
        )
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self._gate_of_loop = _Gate(0)  # replaced on first use
        sync_pool = self._sync_client.connection_pool if self._sync_client is not None else None
        self._sync_gate = _SyncGate(
            min(max_connections, (sync_pool.max_connections if sync_pool else 0) or max_connections)
        )
        self._last_ttl: tuple[Any, tuple[float | None, int]] = (object(), (None, -1))
        self._lock_ms = max(1, round(self.lock_timeout * 1000))
        self._stale_ms = round(self.stale_ttl * 1000)
        # Escaped names are plain ASCII without quotes, so they can be written into the script.
        self._read_source = (
            _READ.replace("@CODEC@", self.codec.codec_id)
            .replace("@LOCK_MS@", str(self._lock_ms))
            .replace("@NS@", self._ns)
            .replace("@TAIL@", str(len(self._ns) + 4))
        )
        self._read_sha = _sha(self._read_source)
        self._codec_id = self.codec.codec_id.encode()
        self._clock_checks = self._stale_ms > 0 or early_refresh_beta is not None
        self._stats = CacheStats()
        self._local: dict[str, asyncio.Future[Any] | _Reading] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._token_base = secrets.token_hex(6)
        self._tokens = itertools.count()
        self._sync = _SyncRedis(self)

    # ---------------------------------------------------------- shared helpers

    def _value_key(self, key: str) -> str:
        return f"{self._ns}:v:{_escaped(key)}"

    def _lock_key(self, key: str) -> str:
        return f"{self._ns}:l:{_escaped(key)}"

    def _tag_key(self, tag: str) -> str:
        return f"{self._ns}:t:{_escaped(tag)}"

    def _keys(self, key: str, tags: Sequence[str]) -> list[str]:
        escaped = _escaped(key)
        keys = [f"{self._ns}:v:{escaped}", f"{self._ns}:l:{escaped}", f"{self._ns}:epoch"]
        if tags:
            keys.extend(self._tag_key(t) for t in tags)
        return keys

    def _ttl_ms(self, ttl_seconds: float | _Missing | None) -> tuple[float | None, int]:
        if ttl_seconds is self._last_ttl[0]:
            return self._last_ttl[1]  # the same object as last time, already checked
        ttl = self.default_ttl if isinstance(ttl_seconds, _Missing) else validate_ttl(ttl_seconds)
        checked = (ttl, (-1 if ttl is None else max(1, round(ttl * 1000))))
        self._last_ttl = (ttl_seconds, checked)
        return checked

    def _token(self) -> str:
        # The pid keeps tokens apart in forked children that inherit the counter.
        return f"{self._token_base}-{os.getpid()}-{next(self._tokens)}"

    def _read_args(self, token: str, force: bool = False) -> list[str]:
        if self.early_refresh_beta is None:
            return [token, "1"] if force else [token]
        draw = -self.early_refresh_beta * math.log(1.0 - random.random())
        return [token, "1" if force else "0", repr(draw)]

    def _write_args(
        self, token: str, read: _Read | None, data: bytes, ttl_ms: int, creator_ms: int
    ) -> list[Any]:
        if ttl_ms > 0 and self.jitter:
            ttl_ms = max(1, round(ttl_ms * (1.0 - self.jitter * random.random())))
        return [
            token,
            read.epoch if read else "",
            read.versions if read else "",
            self.codec.codec_id,
            data,
            ttl_ms,
            self._stale_ms,
            creator_ms,
        ]

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

    def _decode(self, record: bytes) -> Any:
        """The value of a record, or MISSING (counted and logged) when it cannot be decoded."""
        return self._decode_payload(_payload(record))

    def _decode_payload(self, payload: bytes) -> Any:
        try:
            return self.codec.decode(payload)
        except Exception as exc:
            self._stats.decode_errors += 1
            logger.warning(
                "cachewire: a cached value in %s could not be decoded by %s (%s); it is computed "
                "again and overwritten",
                self._ns,
                type(self.codec).__name__,
                exc,
            )
            return MISSING

    def _fresh(
        self, record: bytes | None, versions: bytes, *, early: bool = True
    ) -> tuple[Any, bool]:
        """(value, unreadable): the value of a fresh, current record, else MISSING.

        Redis drops a record at its TTL unless it keeps it for serve-stale, so only then (or for
        early refresh) is the soft expiry compared, on this host's clock; whatever looks due is
        left to the lease script, which decides on the server's clock.
        """
        if record is None:
            return MISSING, False
        parts = record.split(b"\n", 4)
        if len(parts) != 5:
            return MISSING, False  # not a record of this format: the lease script replaces it
        soft, delta, codec, stored, payload = parts
        if codec != self._codec_id or stored != versions:
            return MISSING, False
        if self._clock_checks and soft != b"0":
            now = time.time() * 1000
            draw = (
                -self.early_refresh_beta * math.log(1.0 - random.random())
                if self.early_refresh_beta and early
                else 0.0
            )
            try:
                due = now + int(delta) * draw >= int(soft)
            except ValueError:
                due = True  # a damaged header: the lease script replaces the record
            if due:
                return MISSING, False
        value = self._decode_payload(payload)
        return value, value is MISSING

    def _served(self, call: _Call, read: _Read) -> Any:
        """The stale or early-refresh value this caller may be answered with, else MISSING."""
        if not read.record or read.state == "m":
            return MISSING
        if read.state == "s" and call.stale_ttl is not None and call.stale_ttl <= 0:
            return MISSING
        value = self._decode(read.record)
        if value is MISSING:
            return MISSING
        if read.state == "s":
            self._stats.stale_hits += 1
        else:
            self._stats.hits += 1
            if read.won:
                self._stats.early_refreshes += 1
        return value

    def _start_creator(self, key: str) -> contextvars.Token[frozenset[tuple[int, str]]]:
        self._stats.misses += 1
        self._stats.creator_calls += 1
        return _computing.set(_computing.get() | {(id(self), key)})

    def _end_creator(
        self, token: contextvars.Token[frozenset[tuple[int, str]]], started: float, failed: bool
    ) -> int:
        """Account for a finished creator; return how long it ran in milliseconds."""
        _computing.reset(token)
        elapsed = time.monotonic() - started
        self._stats.creator_time_total += elapsed
        if failed:
            self._stats.creator_errors += 1
        return round(elapsed * 1000)

    # ----------------------------------------------------------------- async

    def _gate(self) -> _Gate:
        loop = asyncio.get_running_loop()
        if loop is self._gate_loop:
            return self._gate_of_loop
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = _Gate(self._max_connections)
        self._gate_loop, self._gate_of_loop = loop, gate
        return gate

    async def _eval(self, source: str, sha: str, keys: list[str], args: list[Any]) -> Any:
        async with self._gate():
            try:
                return await self._client.evalsha(sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                await self._client.script_load(source)
                return await self._client.evalsha(sha, len(keys), *keys, *args)

    async def _read(self, keys: list[str], args: list[str]) -> _Read | bytes:
        sent = [keys[0], *keys[3:]] if len(keys) > 3 else keys[:1]
        return _parse(await self._eval(self._read_source, self._read_sha, sent, args))

    async def _fetch(self, key: str, tags: Sequence[str]) -> tuple[bytes | None, bytes]:
        """The stored record of ``key`` and the current versions of its tags: one GET or MGET."""
        loop = asyncio.get_running_loop()
        gate = self._gate_of_loop if loop is self._gate_loop else self._gate()
        value_key = f"{self._ns}:v:{_escaped(key)}"
        if not gate.take():
            await gate.wait()
        try:
            if tags:
                replies: list[Any] = await self._client.mget(value_key, *map(self._tag_key, tags))
                return replies[0], _versions(replies[1:])
            return cast(bytes | None, await self._client.get(value_key)), b""
        finally:
            gate.release()

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
        waiting = self._local.get(key)
        if waiting is not None:
            self._stats.coalesced += 1
            pending = waiting.waited() if isinstance(waiting, _Reading) else waiting
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not pending.cancelled() or (current is not None and current.cancelling()):
                    raise
            # The caller whose read this was is gone before it could answer: ask again.
            return await self.get_or_create(
                key, creator, ttl_seconds, tags=tags, stale_ttl=stale_ttl
            )
        # This caller reads on its own task (a hit is one GET and nothing more) while this
        # process's other callers of the key wait for its answer; work that has to outlive the
        # caller (computing, waiting for a lease) runs in a task of the cache's.
        reading = self._local[key] = _Reading()
        try:
            record, versions = await self._fetch(key, tags)
        except BaseException as exc:
            return await self._read_failed(key, creator, reading, None, exc)
        value, unreadable = self._fresh(record, versions)
        if value is not MISSING:
            self._stats.hits += 1
            self._settle(key, reading, value)
            return value
        # Not fresh here: the lease script decides on the server's clock, and takes the lease.
        keys = self._keys(key, tags)
        token = self._token()
        try:
            found = await self._read(keys, self._read_args(token, unreadable))
        except BaseException as exc:
            return await self._read_failed(key, creator, reading, (keys[1], token), exc)
        if isinstance(found, bytes):
            value = self._decode(found)
            if value is not MISSING:
                self._stats.hits += 1
                self._settle(key, reading, value)
                return value
            call = _Call(key, creator, keys, ttl, ttl_ms, stale_ttl)
            flight = self._fly(key, self._wait(call, force=True, pause=False), reading)
            return await asyncio.shield(flight)
        call = _Call(key, creator, keys, ttl, ttl_ms, stale_ttl)
        served = self._served(call, found)
        if found.won:
            if served is MISSING:
                return await asyncio.shield(self._fly(key, self._lead(call, token, found), reading))
            self._settle(key, reading, served)
            self._fly(key, self._lead(call, token, found), reading, shared=False)
            return served
        if served is not MISSING:
            self._settle(key, reading, served)
            return served
        self._stats.coalesced += 1  # another process holds the lease
        self._stats.lock_waits += 1
        return await asyncio.shield(self._fly(key, self._wait(call), reading))

    async def _read_failed(
        self,
        key: str,
        creator: Creator,
        reading: _Reading,
        lease: tuple[str, str] | None,
        exc: BaseException,
    ) -> Any:
        if isinstance(exc, _BACKEND_ERRORS):
            try:
                self._backend_failed(exc)
            except CacheBackendError as error:
                self._settle(key, reading, error=error)
                raise
            return await asyncio.shield(self._fly(key, self._creator_only(key, creator), reading))
        if isinstance(exc, asyncio.CancelledError):
            if lease is not None:
                self._keep(self._release(*lease))  # the lease may have been taken for us
            self._settle(key, reading)
        else:
            self._settle(key, reading, error=exc)
        raise exc

    def _settle(
        self,
        key: str,
        reading: _Reading,
        value: Any = MISSING,
        *,
        error: BaseException | None = None,
    ) -> None:
        """Answer the callers that waited for ``reading``; without a value they ask again."""
        if self._local.get(key) is reading:
            del self._local[key]
        waited = reading.future
        if waited is None:
            return
        if error is not None:
            waited.set_exception(error)
            waited.exception()  # retrieved: the waiters re-raise it
        elif value is MISSING:
            waited.cancel()
        else:
            waited.set_result(value)

    def _fly(
        self,
        key: str,
        work: Coroutine[Any, Any, Any],
        reading: _Reading,
        *,
        shared: bool = True,
    ) -> asyncio.Task[Any]:
        """Run ``work`` in a task of the cache's; its outcome answers the callers of ``reading``.

        A shared task is also what this process's later callers of ``key`` wait for; a background
        refresh is not shared, so they keep being answered from Redis meanwhile.
        """
        task = asyncio.get_running_loop().create_task(work)
        if shared:
            self._local[key] = task
        else:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda done: self._flight_done(key, done, reading))
        return task

    def _flight_done(self, key: str, task: asyncio.Task[Any], reading: _Reading) -> None:
        if self._local.get(key) is task:
            del self._local[key]
        waited = reading.future
        if waited is None or waited.done():
            pass
        elif task.cancelled():
            waited.cancel()
        elif task.exception() is not None:
            waited.set_exception(task.exception())  # type: ignore[arg-type]
            waited.exception()
        else:
            waited.set_result(task.result())
        if not task.cancelled():
            task.exception()  # retrieved: every waiter re-raises it

    def _keep(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wakeups_here(self) -> _Wakeups | None:
        if not self._can_subscribe:
            return None  # the only connection must stay free for commands
        loop = asyncio.get_running_loop()
        wakeups = self._wakeups.get(loop)
        if wakeups is None:
            wakeups = self._wakeups[loop] = _Wakeups(self._client, self._wake_channel, self._stats)
        return wakeups

    async def _wait(self, call: _Call, *, force: bool = False, pause: bool = True) -> Any:
        """Wait while another caller holds the lease; take over when it is gone.

        A wait ends when the lease's holder announces that it published or gave up, or at the
        latest after a backoff (5 ms doubling to ``WAIT_MAX``, or ``WAIT_MAX_SUBSCRIBED`` once
        announcements can arrive), whichever comes first.
        """
        delay = self.WAIT_FIRST
        started = time.monotonic()
        wakeups = self._wakeups_here()
        with contextlib.ExitStack() as stack:
            if wakeups is not None:
                stack.enter_context(wakeups.session())
            try:
                return await self._wait_for_lease(call, wakeups, delay, force, pause)
            finally:
                self._stats.lock_wait_time += time.monotonic() - started

    async def _wait_for_lease(
        self, call: _Call, wakeups: _Wakeups | None, delay: float, force: bool, pause: bool
    ) -> Any:
        while True:
            if pause:
                timeout = delay * (0.5 + random.random() / 2)
                if wakeups is None:
                    await asyncio.sleep(timeout)
                else:
                    await wakeups.wait(call.keys[1], timeout)
                # While announcements arrive, looking again is only a safety net.
                longest = self.WAIT_MAX
                if wakeups is not None and wakeups.subscribed.is_set():
                    longest = max(longest, self.WAIT_MAX_SUBSCRIBED)
                delay = min(delay * 2, longest)
            pause = True
            token = self._token()
            try:
                found = await self._read(call.keys, self._read_args(token, force))
            except _BACKEND_ERRORS as exc:
                self._backend_failed(exc)
                return await self._creator_only(call.key, call.creator)
            if isinstance(found, bytes):
                value = self._decode(found)
                if value is not MISSING:
                    return value
                force = True
                continue
            if found.won:
                return await self._lead(call, token, found)
            served = self._served(call, found)
            if served is not MISSING:
                return served

    async def _lead(self, call: _Call, token: str, read: _Read) -> Any:
        """Compute while holding the lease, then publish if the lease and the key are intact."""
        lock_key = call.keys[1]
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(lock_key, token))
        try:
            value, creator_ms = await self._run_creator(call.key, call.creator)
            data = self._encode(value)
        except BaseException:
            heartbeat.cancel()
            await self._release(lock_key, token)
            raise
        heartbeat.cancel()
        if call.ttl == 0:
            await self._release(lock_key, token)
            return value
        try:
            written = await self._eval(
                _WRITE,
                _WRITE_SHA,
                call.keys,
                self._write_args(token, read, data, call.ttl_ms, creator_ms),
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
            await self._eval(_RELEASE, _RELEASE_SHA, [lock_key], [token, self._wake_channel])
        except _BACKEND_ERRORS:
            self._stats.backend_errors += 1

    async def _heartbeat(self, lock_key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lock_ms / 3000)
            try:
                if not await self._eval(_EXTEND, _EXTEND_SHA, [lock_key], [token, self._lock_ms]):
                    self._stats.lock_lost += 1
                    return
            except _BACKEND_ERRORS:
                self._stats.backend_errors += 1

    async def _run_creator(self, key: str, creator: Creator) -> tuple[Any, int]:
        """The creator's value and how long it ran, in milliseconds."""
        token = self._start_creator(key)
        started = time.monotonic()
        try:
            value = creator()
            if inspect.isawaitable(value):
                value = await value
        except BaseException:
            self._end_creator(token, started, failed=True)
            raise
        return value, self._end_creator(token, started, failed=False)

    async def _creator_only(self, key: str, creator: Creator) -> Any:
        return (await self._run_creator(key, creator))[0]

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        try:
            found = await self._fetch(key, tags)
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)
            return default
        return self._got(*found, default)

    def _got(self, record: bytes | None, versions: bytes, default: Any) -> Any:
        value, _ = self._fresh(record, versions, early=False)
        if value is MISSING:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return value

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
            await self._eval(
                _WRITE,
                _WRITE_SHA,
                self._keys(key, tags),
                self._write_args("", None, data, ttl_ms, 0),
            )
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)

    async def invalidate(self, key: str) -> bool:
        try:
            removed = await self._eval(
                _INVALIDATE, _INVALIDATE_SHA, [self._value_key(key), self._lock_key(key)], []
            )
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)
            return False
        return bool(removed)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        try:
            async with self._gate(), self._client.pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.incr(self._tag_key(tag))
                await pipe.execute()
        except _BACKEND_ERRORS as exc:
            self._backend_failed(exc)

    async def clear(self) -> None:
        try:
            async with self._gate():
                await self._client.incr(f"{self._ns}:epoch")
            for kind in ("v", "l"):
                batch: list[Any] = []
                async with self._gate():
                    async for name in self._client.scan_iter(
                        match=f"{self._ns}:{kind}:*", count=500
                    ):
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
        for wakeups in list(self._wakeups.values()):
            await wakeups.stop()
        await self._client.aclose()
        if self._sync_client is not None:
            self._sync_client.close()

    async def __aenter__(self) -> RedisCacheAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _SyncRedis(SyncCacheAdapter):
    """Blocking twin of `RedisCacheAdapter` on a blocking redis-py client.

    Threads coordinate through the lease like processes do; a stale value is refreshed by a
    background thread while the caller is answered with it.
    """

    def __init__(self, adapter: RedisCacheAdapter) -> None:
        self._cache = adapter

    def _client(self) -> redis.Redis:
        if self._cache._sync_client is None:
            raise ConfigurationError(
                "the blocking twin needs redis_url= or sync_client= on RedisCacheAdapter"
            )
        return self._cache._sync_client

    def _eval(self, source: str, sha: str, keys: list[str], args: list[Any]) -> Any:
        client = self._client()
        with self._cache._sync_gate:
            try:
                return client.evalsha(sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                client.script_load(source)
                return client.evalsha(sha, len(keys), *keys, *args)

    def _fetch(self, key: str, tags: Sequence[str]) -> tuple[bytes | None, bytes]:
        """The stored record of ``key`` and the current versions of its tags: one GET or MGET."""
        cache = self._cache
        value_key = cache._value_key(key)
        with cache._sync_gate:
            if not tags:
                return cast(bytes | None, self._client().get(value_key)), b""
            found = self._client().mget(value_key, *map(cache._tag_key, tags))
        record, *versions = cast(list[bytes | None], found)
        return record, _versions(versions)

    def _read(self, keys: list[str], args: list[str]) -> _Read | bytes:
        cache = self._cache
        sent = [keys[0], *keys[3:]] if len(keys) > 3 else keys[:1]
        return _parse(self._eval(cache._read_source, cache._read_sha, sent, args))

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
        try:
            value, force = cache._fresh(*self._fetch(key, tags))
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return self._run_creator(key, creator)[0]
        if value is not MISSING:
            cache._stats.hits += 1
            return value  # type: ignore[no-any-return]
        call = _Call(key, creator, cache._keys(key, tags), ttl, ttl_ms, stale_ttl)
        delay, waited = cache.WAIT_FIRST, False
        while True:
            token = cache._token()
            try:
                found = self._read(call.keys, cache._read_args(token, force))
            except _BACKEND_ERRORS as exc:
                cache._backend_failed(exc)
                return self._run_creator(key, creator)[0]
            if isinstance(found, bytes):
                value = cache._decode(found)
                if value is not MISSING:
                    cache._stats.hits += 1
                    return value  # type: ignore[no-any-return]
                force = True
                continue
            served = cache._served(call, found)
            if found.won and served is not MISSING:
                threading.Thread(
                    target=self._refresh, args=(call, token, found), daemon=True
                ).start()
            if served is not MISSING:
                return served  # type: ignore[no-any-return]
            if found.won:
                return self._lead(call, token, found)  # type: ignore[no-any-return]
            if not waited:
                cache._stats.coalesced += 1  # another thread or process holds the lease
                cache._stats.lock_waits += 1
                waited = True
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, cache.WAIT_MAX)

    def _lead(self, call: _Call, token: str, read: _Read) -> Any:
        cache = self._cache
        lock_key = call.keys[1]
        stop = threading.Event()
        threading.Thread(target=self._heartbeat, args=(lock_key, token, stop), daemon=True).start()
        try:
            value, creator_ms = self._run_creator(call.key, call.creator)
            data = cache._encode(value)
        except BaseException:
            stop.set()
            self._release(lock_key, token)
            raise
        stop.set()
        if call.ttl == 0:
            self._release(lock_key, token)
            return value
        try:
            written = self._eval(
                _WRITE,
                _WRITE_SHA,
                call.keys,
                cache._write_args(token, read, data, call.ttl_ms, creator_ms),
            )
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return value
        if not written:
            cache._stats.writes_rejected += 1
        return value

    def _refresh(self, call: _Call, token: str, read: _Read) -> None:
        """A background refresh: its error is counted (creator_errors) and logged, not raised."""
        try:
            self._lead(call, token, read)
        except Exception:
            logger.warning(
                "cachewire: refreshing %r in the background failed", call.key, exc_info=True
            )

    def _release(self, lock_key: str, token: str) -> None:
        try:
            self._eval(_RELEASE, _RELEASE_SHA, [lock_key], [token, self._cache._wake_channel])
        except _BACKEND_ERRORS:
            self._cache._stats.backend_errors += 1

    def _heartbeat(self, lock_key: str, token: str, stop: threading.Event) -> None:
        lock_ms = self._cache._lock_ms
        while not stop.wait(lock_ms / 3000):
            try:
                if not self._eval(_EXTEND, _EXTEND_SHA, [lock_key], [token, lock_ms]):
                    self._cache._stats.lock_lost += 1
                    return
            except _BACKEND_ERRORS:
                self._cache._stats.backend_errors += 1

    def _run_creator(self, key: str, creator: Callable[[], T]) -> tuple[T, int]:
        cache = self._cache
        token = cache._start_creator(key)
        started = time.monotonic()
        try:
            value = creator()
        except BaseException:
            cache._end_creator(token, started, failed=True)
            raise
        return value, cache._end_creator(token, started, failed=False)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        cache = self._cache
        try:
            found = self._fetch(key, tags)
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return default
        return cache._got(*found, default)

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
            self._eval(
                _WRITE,
                _WRITE_SHA,
                cache._keys(key, tags),
                cache._write_args("", None, data, ttl_ms, 0),
            )
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)

    def invalidate(self, key: str) -> bool:
        cache = self._cache
        try:
            removed = self._eval(
                _INVALIDATE, _INVALIDATE_SHA, [cache._value_key(key), cache._lock_key(key)], []
            )
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
            return False
        return bool(removed)

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        cache = self._cache
        try:
            with cache._sync_gate, self._client().pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.incr(cache._tag_key(tag))
                pipe.execute()
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)

    def clear(self) -> None:
        cache = self._cache
        client = self._client()
        try:
            with cache._sync_gate:
                client.incr(f"{cache._ns}:epoch")
                for kind in ("v", "l"):
                    names = list(client.scan_iter(match=f"{cache._ns}:{kind}:*", count=500))
                    for start in range(0, len(names), 500):
                        client.unlink(*names[start : start + 500])
        except _BACKEND_ERRORS as exc:
            cache._backend_failed(exc)
