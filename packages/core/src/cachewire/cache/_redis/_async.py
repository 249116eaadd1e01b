"""`RedisCacheAdapter`: a cache shared by every process, with a lease so one caller computes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from cachewire.cache._base import MISSING, BaseCacheAdapter, Creator, SyncCacheAdapter, _Missing
from cachewire.cache._codec import Codec
from cachewire.cache._flight import COMPUTING, CreatorRun, FlightTable, check_reentry
from cachewire.cache._redis._connect import async_reader, connect, tracking_connection
from cachewire.cache._redis._core import BACKEND_ERRORS, RedisCore
from cachewire.cache._redis._record import READ, WRITE, join_versions
from cachewire.cache._redis._steps import (
    Call,
    Compute,
    Eval,
    Pause,
    Refresh,
    Run,
    Steps,
    backoff,
)
from cachewire.cache._redis._sync import SyncRedis
from cachewire.cache._redis._tracking import LocalTagVersions
from cachewire.cache._redis._waiting import Drive, Gate, Pending, Wakeups
from cachewire.errors import ConfigurationError

__all__ = ["RedisCacheAdapter"]

_STAMPED = {READ: "read", WRITE: "published"}

#: Defaults that bound what a frozen or unreachable Redis costs a call (seconds).
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0


class RedisCacheAdapter(BaseCacheAdapter):
    """A Redis cache with one computation per key across every process.

    Values, leases and tag versions live in separate namespaces under ``namespace`` that no user
    key can reach. A hit is one plain GET (MGET with tag versions). A miss then runs one script
    that looks again and takes the lease, computes, and publishes with a second script, only while
    it still owns the lease and nothing invalidated the key meanwhile. Callers of a key in one
    process share one read, one computation or one wait; waiters are woken through pub/sub (with
    a backoff as a safety net) for as long as the lease lives, then take over.

    ``stale_ttl`` keeps a value that long past its TTL: one caller refreshes it in the background
    while the others are answered with it. ``early_refresh_beta`` turns on probabilistic early
    refresh (XFetch); ``jitter`` removes up to that fraction of each TTL at random.

    ``fail_open`` (default): when Redis fails, callers compute and the error is counted in
    ``backend_errors`` and logged (rate-limited); with ``fail_open=False`` they get
    `CacheBackendError`. After ``breaker_threshold`` failures in a row Redis is skipped for
    ``breaker_cool_down`` seconds. ``socket_timeout`` / ``socket_connect_timeout`` bound each
    command when the adapter builds its own clients.

    ``local_tag_versions=True`` keeps the versions of tags in this process, kept coherent by
    Redis's client-side caching (one tracking connection and a reader thread per adapter per
    process): a tagged hit is then one GET instead of an MGET of the value and its tags. Needs
    ``redis_url=`` or ``sync_client=`` and Redis 6 or later; see docs/cache.md for what another
    process's invalidation then promises.
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
        socket_timeout: float | None = SOCKET_TIMEOUT,
        socket_connect_timeout: float | None = CONNECT_TIMEOUT,
        breaker_threshold: int = 5,
        breaker_cool_down: float = 5.0,
        local_tag_versions: bool = False,
    ) -> None:
        clients = connect(
            redis_url,
            client=client,
            sync_client=sync_client,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
        )
        self.core = RedisCore(
            namespace=namespace,
            codec=codec,
            default_ttl=default_ttl,
            lock_timeout=lock_timeout,
            stale_ttl=stale_ttl,
            early_refresh_beta=early_refresh_beta,
            jitter=jitter,
            fail_open=fail_open,
            where=clients.where,
            breaker_threshold=breaker_threshold,
            breaker_cool_down=breaker_cool_down,
        )
        self.redis_url = redis_url
        self.codec = self.core.codec
        self.default_ttl, self.stale_ttl = self.core.default_ttl, self.core.stale_ttl
        self.lock_timeout, self.fail_open = self.core.lock_timeout, fail_open
        self.early_refresh_beta, self.jitter = early_refresh_beta, jitter
        self._client, self._sync_client = clients.async_client, clients.sync_client
        self._command = async_reader(self._client)  # sends the GET or MGET of a hit
        # redis-py refuses a command outright when its pool is exhausted; callers beyond the
        # pool's size wait for a connection here instead (one gate per event loop).
        pool_size = min(
            max_connections, self._client.connection_pool.max_connections or max_connections
        )
        # One connection stays free for the wake-up subscription of waiting callers.
        self._max_connections = max(1, pool_size - 1)
        self._can_subscribe = pool_size > 1
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Gate] = (
            weakref.WeakKeyDictionary()
        )
        self._wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wakeups] = (
            weakref.WeakKeyDictionary()
        )
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self._gate_of_loop = Gate(0)  # replaced on first use
        self._stats = self.core.stats
        self._local: FlightTable[Pending] = FlightTable()
        # Counts reads sent; a caller joining another's read compares tickets (see get_or_create).
        self._sends = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._tag_versions: LocalTagVersions | None = None
        if local_tag_versions:
            if self._sync_client is None:
                raise ConfigurationError(
                    "local_tag_versions=True needs redis_url= or sync_client= on "
                    "RedisCacheAdapter: its tracking connection is a blocking one"
                )
            self._tag_versions = LocalTagVersions(
                tracking_connection(self._sync_client), self.core.tag_prefix, where=clients.where
            )
            # An adapter dropped without being closed stops its reader thread (which holds no
            # reference to the adapter) and its connection when it is collected.
            weakref.finalize(self, self._tag_versions.close, wait=False)
        self.local_tag_versions = bool(local_tag_versions)
        self._sync = SyncRedis(
            self, self.core, self._sync_client, max_connections, self._local, self._tag_versions
        )

    # ------------------------------------------------------------------ I/O

    def _gate(self) -> Gate:
        loop = asyncio.get_running_loop()
        if loop is self._gate_loop:
            return self._gate_of_loop
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = Gate(self._max_connections)
        self._gate_loop, self._gate_of_loop = loop, gate
        return gate

    async def _drive(self, steps: Steps, drive: Drive | None = None) -> Any:
        """Run the core's steps, performing each with an await; errors go back into them."""
        run = Run(steps)
        for step in run:
            try:
                run.reply(await self._perform(step, drive))
            except BaseException as exc:
                run.fail(exc)
        return run.value

    async def _perform(self, step: Any, drive: Drive | None = None) -> Any:
        if drive is not None:
            # The moments an answer can be current as of (see `_join`) are numbered in order.
            kind = "computed" if isinstance(step, Compute) else None
            if isinstance(step, Eval):
                kind = _STAMPED.get(step.script)
            if kind is not None:
                self._sends = drive.tickets[kind] = self._sends + 1
        if isinstance(step, Eval):
            return await self._eval(step)
        if isinstance(step, Pause):
            return await self._pause(step, drive)
        if isinstance(step, Compute):
            with CreatorRun(self, step.key, self._stats) as creator_run:
                value = step.creator()
                if inspect.isawaitable(value):
                    value = await value
            return value, creator_run.ms
        if step.stop is not None:
            step.stop.cancel()
            return None
        return asyncio.get_running_loop().create_task(self._heartbeat(step.keys, step.token))

    async def _eval(self, step: Eval) -> Any:
        breaker = self.core.breaker
        if breaker.failures:
            breaker.check()
        async with self._gate():
            try:
                reply = await self._send_eval(step)
            except redis_errors.NoScriptError:
                await self._client.script_load(step.script.source)
                reply = await self._send_eval(step)
        breaker.succeeded()
        return reply

    async def _send_eval(self, step: Eval) -> Any:
        sha, keys, args = step.script.sha, step.keys, step.args
        if step.stage is None:
            return await self._client.evalsha(sha, len(keys), *keys, *args)
        stage_key, record, stage_ms = step.stage
        pipe = self._client.pipeline(transaction=False)
        pipe.set(stage_key, record, px=stage_ms)
        pipe.evalsha(sha, len(keys), *keys, *args)
        return (await pipe.execute())[1]

    async def _fetch(self, value_key: str, tags: Sequence[str]) -> tuple[bytes | None, bytes]:
        """The stored record of a key and the current versions of its tags: one GET or MGET."""
        loop = asyncio.get_running_loop()
        gate = self._gate_of_loop if loop is self._gate_loop else self._gate()
        breaker = self.core.breaker
        if breaker.failures:
            breaker.check()
        if not gate.take():
            await gate.wait()
        try:
            if not tags:
                found = await self._command("GET", value_key, keys=(value_key,)), b""
            elif self._tag_versions is None:
                names = (value_key, *self.core.tag_keys(tags))
                record, *versions = await self._command("MGET", *names, keys=names)
                found = record, join_versions(versions)
            else:
                found = await self._fetch_by_local_versions(value_key, self.core.tag_keys(tags))
        finally:
            gate.release()
        if breaker.failures:
            breaker.succeeded()
        return found

    async def _fetch_by_local_versions(
        self, value_key: str, tag_keys: Sequence[str]
    ) -> tuple[bytes | None, bytes]:
        """One GET when this process knows the tags' versions, else an MGET that fills them."""
        local = cast(LocalTagVersions, self._tag_versions)
        if local.covers(tag_keys):
            record = await self._command("GET", value_key, keys=(value_key,))
            versions = local.known(tag_keys)  # only now: see LocalTagVersions.known
            if versions is not None:
                return record, versions
        mark = local.begin_fill(tag_keys)
        found: list[bytes | None] = []
        try:
            names = (value_key, *tag_keys)
            record, *found = await self._command("MGET", *names, keys=names)
        finally:
            local.end_fill(mark, tag_keys, found)
        return record, join_versions(found)

    async def _heartbeat(self, keys: list[str], token: str) -> None:
        while True:
            await asyncio.sleep(self.core.lock_ms / 3000)
            if not await self._drive(self.core.heartbeat_steps(keys, token)):
                return

    def _wakeups_here(self) -> Wakeups | None:
        if not self._can_subscribe:
            return None  # the only connection must stay free for commands
        loop = asyncio.get_running_loop()
        wakeups = self._wakeups.get(loop)
        if wakeups is None:
            wakeups = self._wakeups[loop] = Wakeups(
                self._client, self.core.wake_channel, self._stats
            )
        return wakeups

    async def _pause(self, step: Pause, drive: Drive | None) -> None:
        wakeups = self._wakeups_here() if drive is not None else None
        if wakeups is not None and drive is not None and step.attempt == 0:
            drive.waits.enter_context(wakeups.session())
        longest = self.WAIT_MAX
        if wakeups is not None and wakeups.subscribed.is_set():
            # While announcements arrive, looking again is only a safety net: wait longer.
            longest = max(longest, self.WAIT_MAX_SUBSCRIBED)
        timeout = backoff(step.attempt, self.WAIT_FIRST, longest)
        started = time.monotonic()
        try:
            if wakeups is None:
                await asyncio.sleep(timeout)
            else:
                await wakeups.wait(step.lock_key, timeout)
        finally:
            self._stats.lock_wait_time += time.monotonic() - started

    # ------------------------------------------------------------- reading

    async def get_or_create(
        self,
        key: str,
        creator: Creator,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> Any:
        core = self.core
        ttl, ttl_ms = core.ttl_ms(ttl_seconds)
        if COMPUTING.get():
            check_reentry(self, key)
        local = self._local.by_key
        pending = local.get(key)
        if pending is not None:
            self._stats.coalesced += 1
            return await self._join(pending, key, creator, ttl_seconds, tags, stale_ttl)
        # This caller reads on its own task (a hit is one GET and nothing more) while this
        # process's other callers of the key wait for its answer; work that has to outlive the
        # caller (computing, waiting for a lease) runs in a task of the cache's.
        value_key = core.value_key(key)
        pending = local[key] = Pending(tags)
        self._sends = sent = self._sends + 1
        try:
            record, versions = await self._fetch(value_key, tags)
            value, unreadable = core.fresh(key, record, versions)
        except BaseException as exc:
            if isinstance(exc, BACKEND_ERRORS):
                try:
                    core.backend_failed(exc)
                except BaseException as error:
                    self._answer(key, pending, error=error)
                    raise
                call = Call(key, creator, [], ttl, ttl_ms, stale_ttl)
                flight = self._fly(key, self._creator_only(call), pending)
                return (await asyncio.shield(flight))[0]
            self._answer(
                key, pending, error=None if isinstance(exc, asyncio.CancelledError) else exc
            )
            raise
        if value is not MISSING:
            self._stats.hits += 1
            if pending.future is None and local.get(key) is pending:
                del local[key]  # nobody waited: the common hit, answered without a call
            else:
                self._answer(key, pending, (value, sent))
            return value
        try:
            call = Call(key, creator, core.keys(key, tags), ttl, ttl_ms, stale_ttl)
        except BaseException as exc:
            self._answer(key, pending, error=exc)
            raise
        flight = self._fly(key, self._resolve(call, unreadable), pending)
        return (await asyncio.shield(flight))[0]

    async def _join(
        self,
        pending: Pending,
        key: str,
        creator: Creator,
        ttl_seconds: float | _Missing | None,
        tags: Sequence[str],
        stale_ttl: float | None,
    ) -> Any:
        """Wait for another caller's read or computation of ``key`` and take its answer.

        Only an answer current as of a moment after this caller arrived is taken (read from
        Redis, computed or published after it; tickets order those moments in this process): an
        invalidation in another process may have finished just before it arrived. An older
        answer (or none, when its caller was cancelled) makes this caller wait for the next read,
        which began after it arrived, or read for itself: at most once more.
        """
        ticket = self._sends
        while True:
            waited = pending.waited()
            try:
                value, as_of = await asyncio.shield(waited)
                if ticket < as_of:
                    return value
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not waited.cancelled() or (current is not None and current.cancelling()):
                    raise
            following = self._local.by_key.get(key)
            if following is None:  # read for itself: its read is newer than its arrival
                return await self.get_or_create(
                    key, creator, ttl_seconds, tags=tags, stale_ttl=stale_ttl
                )
            pending = following

    async def _resolve(self, call: Call, unreadable: bool) -> tuple[Any, float]:
        """The value, and the newest caller (by ticket) it may answer."""
        with contextlib.ExitStack() as waits:
            drive = Drive(waits)
            miss = self.core.miss_steps(call, force=unreadable)
            value, refresh, source = await self._drive(miss, drive)
        if refresh is not None:
            self._keep(self._refresh(refresh))
        return value, drive.tickets[source]

    async def _refresh(self, refresh: Refresh) -> None:
        # In the background: its error was counted (creator_errors); stale data keeps serving.
        with contextlib.suppress(Exception):
            await self._drive(self.core.lead_steps(refresh.call, refresh.token, refresh.read))

    async def _creator_only(self, call: Call) -> tuple[Any, float]:
        self._sends = ticket = self._sends + 1
        return (await self._perform(Compute(call.key, call.creator)))[0], ticket

    def _answer(
        self,
        key: str,
        pending: Pending,
        value: Any = MISSING,
        *,
        error: BaseException | None = None,
    ) -> None:
        """Answer the callers that waited for ``pending``; without a value they ask again."""
        self._local.discard(key, pending)
        waited = pending.future
        if waited is None or waited.done():
            return
        if error is not None:
            waited.set_exception(error)
            waited.exception()  # retrieved: the waiters re-raise it
        elif value is MISSING:
            waited.cancel()
        else:
            waited.set_result(value)

    def _fly(self, key: str, work: Coroutine[Any, Any, Any], pending: Pending) -> asyncio.Task[Any]:
        """Run ``work`` in a task of the cache's; its outcome answers the callers of ``pending``
        (and this process's later callers of ``key``, until an invalidation detaches it)."""
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(lambda done: self._flight_done(key, done, pending))
        return task

    def _flight_done(self, key: str, task: asyncio.Task[Any], pending: Pending) -> None:
        if task.cancelled():
            self._answer(key, pending)
        elif task.exception() is not None:
            self._answer(key, pending, error=task.exception())
        else:
            self._answer(key, pending, task.result())

    def _keep(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        try:
            record, versions = await self._fetch(self.core.value_key(key), tags)
        except BACKEND_ERRORS as exc:
            self.core.backend_failed(exc)
            return default
        value, _ = self.core.fresh(key, record, versions, early=False)
        if value is MISSING:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return value

    # ------------------------------------------------------------- writing

    async def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        await self._drive(self.core.set_steps(key, value, ttl_seconds, tags))
        self._local.detach(key)  # a read in flight here may have seen the older value

    async def invalidate(self, key: str, *, strict: bool = False) -> bool:
        try:
            return bool(await self._drive(self.core.invalidate_steps(key, strict=strict)))
        finally:
            self._local.detach(key)  # later callers start afresh

    async def invalidate_tags(self, tags: Sequence[str], *, strict: bool = False) -> None:
        try:
            await self._drive(self.core.bump_steps(tags, strict=strict))
        finally:
            if self._tag_versions is not None:
                self._tag_versions.drop(self.core.tag_keys(tags))
            self._local.detach_tagged(tags)

    async def clear(self) -> None:
        core = self.core
        try:
            async with self._gate():
                await self._client.incr(core.epoch_key)
            for kind in ("v", "l", "s"):
                batch: list[Any] = []
                async with self._gate():
                    async for name in self._client.scan_iter(
                        match=f"{core.ns}:{kind}:*", count=500
                    ):
                        batch.append(name)
                        if len(batch) >= 500:
                            await self._client.unlink(*batch)
                            batch = []
                    if batch:
                        await self._client.unlink(*batch)
        except BACKEND_ERRORS as exc:
            core.backend_failed(exc)
        finally:
            self._local.detach_all()

    def get_stats(self) -> dict[str, Any]:
        report = self._stats.as_dict(size=None, keys=None)
        report["in_flight"] = len(self._local)
        report["breaker_open"] = self.core.breaker.is_open
        if self._tag_versions is not None:
            report["local_tag_versions"] = self._tag_versions.report()
        return report

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync

    async def aclose(self) -> None:
        """Close the connections."""
        for wakeups in list(self._wakeups.values()):
            await wakeups.stop()
        if self._tag_versions is not None:
            self._tag_versions.close()
        await self._client.aclose()
        self._sync.close()

    async def __aenter__(self) -> RedisCacheAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
