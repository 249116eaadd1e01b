"""The blocking twin of `RedisCacheAdapter`: the same core, driven with a blocking client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import redis
from redis import exceptions as redis_errors

from cachewire.cache._base import MISSING, SyncCacheAdapter, _Missing
from cachewire.cache._flight import (
    CreatorRun,
    FlightTable,
    call_creator,
    check_reentry,
    refresh_in_background,
)
from cachewire.cache._redis._connect import sync_reader
from cachewire.cache._redis._core import BACKEND_ERRORS, RedisCore
from cachewire.cache._redis._record import join_versions
from cachewire.cache._redis._steps import (
    Call,
    Compute,
    Eval,
    Pause,
    Run,
    Steps,
    backoff,
)
from cachewire.cache._redis._tracking import LocalTagVersions
from cachewire.cache._redis._waiting import SyncGate
from cachewire.errors import ConfigurationError

if TYPE_CHECKING:
    from cachewire.cache._redis._async import RedisCacheAdapter

__all__ = ["SyncRedis"]

T = TypeVar("T")


class SyncRedis(SyncCacheAdapter):
    """Blocking twin of `RedisCacheAdapter` on a blocking redis-py client.

    Threads coordinate through the lease like processes do; a stale value is refreshed by a
    background thread while the caller is answered with it.
    """

    _adapter: RedisCacheAdapter

    def __init__(
        self,
        adapter: RedisCacheAdapter,
        core: RedisCore,
        client: redis.Redis | None,
        max_connections: int,
        flights: FlightTable[Any],
        tag_versions: LocalTagVersions | None,
    ) -> None:
        super().__init__(adapter)
        self._core = core
        self._flights = flights  # the async side's reads in flight, detached by invalidations
        self._client_or_none = client
        # Sends the GET or MGET of a hit.
        self._command: Callable[..., Any] = (
            sync_reader(client) if client is not None else self._no_client
        )
        self._tag_versions = tag_versions
        pool = client.connection_pool if client is not None else None
        self._gate = SyncGate(
            min(max_connections, (pool.max_connections if pool else 0) or max_connections)
        )

    def close(self) -> None:
        if self._client_or_none is not None:
            self._client_or_none.close()

    # ------------------------------------------------------------------ I/O

    def _client(self) -> redis.Redis:
        if self._client_or_none is None:
            self._no_client()
        return self._client_or_none

    @staticmethod
    def _no_client(*args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigurationError(
            "the blocking twin needs redis_url= or sync_client= on RedisCacheAdapter"
        )

    def _drive(self, steps: Steps) -> Any:
        """Run the core's steps, performing each with a blocking call; errors go back in."""
        run = Run(steps)
        for step in run:
            try:
                run.reply(self._perform(step))
            except BaseException as exc:
                run.fail(exc)
        return run.value

    def _perform(self, step: Any) -> Any:
        if isinstance(step, Eval):
            return self._eval(step)
        if isinstance(step, Compute):
            with CreatorRun(self._adapter, step.key, self._core.stats) as creator_run:
                value = call_creator(step.creator)
            return value, creator_run.ms
        if isinstance(step, Pause):
            started = time.monotonic()
            adapter = self._adapter
            time.sleep(backoff(step.attempt, adapter.WAIT_FIRST, adapter.WAIT_MAX))
            self._core.stats.lock_wait_time += time.monotonic() - started
            return None
        if step.stop is not None:
            step.stop.set()
            return None
        stop = threading.Event()
        threading.Thread(
            target=self._heartbeat, args=(step.keys, step.token, stop), daemon=True
        ).start()
        return stop

    def _eval(self, step: Eval) -> Any:
        client, breaker = self._client(), self._core.breaker
        breaker.check()
        with self._gate:
            try:
                reply = self._send_eval(client, step)
            except redis_errors.NoScriptError:
                client.script_load(step.script.source)
                reply = self._send_eval(client, step)
        breaker.succeeded()
        return reply

    @staticmethod
    def _send_eval(client: redis.Redis, step: Eval) -> Any:
        sha, keys, args = step.script.sha, step.keys, step.args
        if step.stage is None:
            return client.evalsha(sha, len(keys), *keys, *args)
        stage_key, record, stage_ms = step.stage
        with client.pipeline(transaction=False) as pipe:
            pipe.set(stage_key, record, px=stage_ms)
            pipe.evalsha(sha, len(keys), *keys, *args)
            return pipe.execute()[1]

    def _fetch(self, value_key: str, tags: Sequence[str]) -> tuple[bytes | None, bytes]:
        command, breaker = self._command, self._core.breaker
        if breaker.failures:
            breaker.check()
        with self._gate:
            if not tags:
                found = command("GET", value_key, keys=(value_key,)), b""
            elif self._tag_versions is None:
                names = (value_key, *self._core.tag_keys(tags))
                record, *versions = command("MGET", *names, keys=names)
                found = record, join_versions(versions)
            else:
                found = self._fetch_by_local_versions(value_key, self._core.tag_keys(tags))
        if breaker.failures:
            breaker.succeeded()
        return found

    def _fetch_by_local_versions(
        self, value_key: str, tag_keys: Sequence[str]
    ) -> tuple[bytes | None, bytes]:
        """One GET when this process knows the tags' versions, else an MGET that fills them."""
        local, command = cast(LocalTagVersions, self._tag_versions), self._command
        if local.covers(tag_keys):
            record = command("GET", value_key, keys=(value_key,))
            versions = local.known(tag_keys)  # only now: see LocalTagVersions.known
            if versions is not None:
                return record, versions
        mark = local.begin_fill(tag_keys)
        found: list[bytes | None] = []
        try:
            names = (value_key, *tag_keys)
            record, *found = command("MGET", *names, keys=names)
        finally:
            local.end_fill(mark, tag_keys, found)
        return record, join_versions(found)

    def _heartbeat(self, keys: list[str], token: str, stop: threading.Event) -> None:
        while not stop.wait(self._core.lock_ms / 3000):
            if not self._drive(self._core.heartbeat_steps(keys, token)):
                return

    # ------------------------------------------------------------ operations

    def get_or_create(
        self,
        key: str,
        creator: Callable[[], T],
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> T:
        core = self._core
        ttl, ttl_ms = core.ttl_ms(ttl_seconds)
        check_reentry(self._adapter, key)
        value_key = core.value_key(key)
        try:
            record, versions = self._fetch(value_key, tags)
        except BACKEND_ERRORS as exc:
            core.backend_failed(exc)
            return cast(T, self._perform(Compute(key, creator))[0])
        value, unreadable = core.fresh(key, record, versions)
        if value is not MISSING:
            core.stats.hits += 1
            return cast(T, value)
        # Only a miss needs the lease's and the tags' names.
        call = Call(key, creator, core.keys(key, tags), ttl, ttl_ms, stale_ttl)
        value, refresh, _ = self._drive(core.miss_steps(call, force=unreadable))
        if refresh is not None:
            steps = self._core.lead_steps(refresh.call, refresh.token, refresh.read)
            refresh_in_background(self._drive, steps)
        return cast(T, value)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        core = self._core
        try:
            record, versions = self._fetch(core.value_key(key), tags)
        except BACKEND_ERRORS as exc:
            core.backend_failed(exc)
            return default
        value, _ = core.fresh(key, record, versions, early=False)
        if value is MISSING:
            core.stats.misses += 1
            return default
        core.stats.hits += 1
        return value

    def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        self._drive(self._core.set_steps(key, value, ttl_seconds, tags))
        self._flights.detach(key)

    def invalidate(self, key: str, *, strict: bool = False) -> bool:
        try:
            return bool(self._drive(self._core.invalidate_steps(key, strict=strict)))
        finally:
            self._flights.detach(key)

    def invalidate_tags(self, tags: Sequence[str], *, strict: bool = False) -> None:
        try:
            self._drive(self._core.bump_steps(tags, strict=strict))
        finally:
            if self._tag_versions is not None:
                self._tag_versions.drop(self._core.tag_keys(tags))
            self._flights.detach_tagged(tags)

    def clear(self) -> None:
        core = self._core
        client = self._client()
        try:
            with self._gate:
                client.incr(core.epoch_key)
                for kind in ("v", "l", "s"):
                    names = list(client.scan_iter(match=f"{core.ns}:{kind}:*", count=500))
                    for start in range(0, len(names), 500):
                        client.unlink(*names[start : start + 500])
        except BACKEND_ERRORS as exc:
            core.backend_failed(exc)
        finally:
            self._flights.detach_all()
