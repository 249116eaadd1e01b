"""Duplicate guards: admit a submission, hold it, or drop it, and release held ones at completion.

A duplicate is the same task name with equal canonical arguments (`TaskMessage.duplicate_key`).
`admit` runs at submit time; the runner calls `finish` once the run ends, which hands back the
next held message (serial, queue_one) for the runner to submit.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, Literal

from cachewire.errors import CacheBackendError, ConfigurationError
from cachewire.tasks._context import count

__all__ = ["Guard", "LocalGuard", "RedisGuard", "resolve_guard"]

Outcome = Literal["accepted", "queued", "discarded"]

#: What a shared guard does when its Redis cannot be reached (see `RedisGuard`).
UNAVAILABLE_POLICIES = ("raise", "run", "local")

logger = logging.getLogger("cachewire.tasks")


class Guard:
    """Where `on_duplicate` state lives. Subclasses must make admit/finish atomic."""

    def admit(self, key: str, policy: str, message_json: str) -> Outcome:
        """Decide what happens to a submission: run it now, hold it, or drop it."""
        raise NotImplementedError

    def finish(self, key: str) -> str | None:
        """End the running call of ``key``; return the next held message (now running) or None."""
        raise NotImplementedError

    def keep_alive(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Keep the running marker of ``key`` alive for the duration of the ``with`` block."""
        return contextlib.nullcontext()


class LocalGuard(Guard):
    """A thread-safe guard for one process (the default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._held: dict[str, collections.deque[str]] = {}

    def admit(self, key: str, policy: str, message_json: str) -> Outcome:
        with self._lock:
            if key not in self._running:
                self._running.add(key)
                return "accepted"
            held = self._held.setdefault(key, collections.deque())
            if policy == "discard" or (policy == "queue_one" and held):
                return "discarded"
            held.append(message_json)
            return "queued"

    def finish(self, key: str) -> str | None:
        with self._lock:
            held = self._held.get(key)
            if held:
                # The key stays marked running: the held message takes over the slot.
                return held.popleft()
            self._held.pop(key, None)
            self._running.discard(key)
            return None


_ADMIT = """
local run, held = KEYS[1], KEYS[2]
local policy, msg, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('SET', run, '1', 'NX', 'PX', lease) then
  return 'accepted'
end
if policy == 'discard' then
  return 'discarded'
end
if policy == 'queue_one' and redis.call('LLEN', held) > 0 then
  return 'discarded'
end
redis.call('RPUSH', held, msg)
redis.call('PEXPIRE', held, lease * 4)
return 'queued'
"""

_FINISH = """
local run, held = KEYS[1], KEYS[2]
local lease = tonumber(ARGV[1])
local nxt = redis.call('LPOP', held)
if nxt then
  redis.call('SET', run, '1', 'PX', lease)
  return nxt
end
redis.call('DEL', run)
return false
"""


class RedisGuard(Guard):
    """A cluster-wide guard in Redis: atomic Lua scripts, held messages in a Redis list.

    The running marker is a lease of ``lease_seconds``, renewed every third of it while the run
    goes on (`keep_alive`): a runner that crashes stops renewing, so the key unblocks at most one
    lease later.

    ``when_unavailable`` says what a submission does while Redis cannot be reached (each call
    waits at most ``socket_timeout``): ``"raise"`` (the default) refuses it with
    `CacheBackendError`; ``"run"`` admits it, so duplicates may run side by side until Redis is
    back; ``"local"`` applies the policy within this process only. The last two log a warning
    and count ``guard_unavailable`` in `task_stats`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cachewire:guard:",
        lease_seconds: float = 300.0,
        when_unavailable: str = "raise",
        socket_timeout: float = 5.0,
    ) -> None:
        try:
            import redis
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                "RedisGuard needs redis-py: install the extra with `pip install cachewire[redis]`"
            ) from exc

        if lease_seconds <= 0:
            raise ConfigurationError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        if when_unavailable not in UNAVAILABLE_POLICIES:
            raise ConfigurationError(
                f"RedisGuard(when_unavailable={when_unavailable!r}) must be one of "
                f"{UNAVAILABLE_POLICIES}"
            )
        self.url = url
        self.prefix = prefix
        self.lease_ms = int(lease_seconds * 1000)
        self.when_unavailable = when_unavailable
        self._fallback = LocalGuard()
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._admit = self._client.register_script(_ADMIT)
        self._finish = self._client.register_script(_FINISH)

    def touch(self, key: str) -> None:
        """Renew the lease of the running marker of ``key`` (no-op once it is gone)."""
        import redis

        try:
            self._client.pexpire(self._keys(key)[0], self.lease_ms)
        except redis.RedisError as exc:
            raise CacheBackendError(f"task guard at {self.url} failed: {exc}") from exc

    @contextlib.contextmanager
    def keep_alive(self, key: str) -> Iterator[None]:
        stop = threading.Event()
        interval = self.lease_ms / 3000

        def renew() -> None:
            while not stop.wait(interval):
                try:
                    self.touch(key)
                except CacheBackendError:
                    logger.warning("could not renew the task guard lease of %s", key, exc_info=True)

        thread = threading.Thread(target=renew, name="cachewire-guard-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _keys(self, key: str) -> list[str]:
        return [f"{self.prefix}{key}:run", f"{self.prefix}{key}:held"]

    def _unavailable(self, exc: Exception, key: str) -> None:
        """Raise, or log and count, as ``when_unavailable`` says."""
        if self.when_unavailable == "raise":
            raise CacheBackendError(f"task guard at {self.url} failed: {exc}") from exc
        count("guard_unavailable")
        logger.warning(
            "task guard at %s is unavailable (%s); %s for %s",
            self.url,
            exc,
            "running the call" if self.when_unavailable == "run" else "guarding in this process",
            key,
        )

    def admit(self, key: str, policy: str, message_json: str) -> Outcome:
        import redis

        try:
            outcome = self._admit(keys=self._keys(key), args=[policy, message_json, self.lease_ms])
        except redis.RedisError as exc:
            self._unavailable(exc, key)
            if self.when_unavailable == "run":
                return "accepted"
            return self._fallback.admit(key, policy, message_json)
        text = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if text not in ("accepted", "queued", "discarded"):
            raise CacheBackendError(f"task guard at {self.url} answered {text!r}")
        return text  # type: ignore[return-value]

    def finish(self, key: str) -> str | None:
        import redis

        if self.when_unavailable == "local":
            held = self._fallback.finish(key)
            if held is not None:
                return held
        try:
            nxt = self._finish(keys=self._keys(key), args=[self.lease_ms])
        except redis.RedisError as exc:
            self._unavailable(exc, key)
            return None
        if nxt is None:
            return None
        return nxt.decode() if isinstance(nxt, bytes) else str(nxt)


_local_guard = LocalGuard()
_redis_guards: dict[str, RedisGuard] = {}
_redis_lock = threading.Lock()


def resolve_guard(spec: Any) -> Guard:
    """Turn a ``guard``/``task_guard`` value into a guard.

    None → the process guard; a `Guard` as is; a ``redis://`` URL or an object with a Redis
    ``url`` attribute (such as a Redis cache adapter) → a shared `RedisGuard`.
    """
    if spec is None:
        return _local_guard
    if isinstance(spec, Guard):
        return spec
    url = spec if isinstance(spec, str) else getattr(spec, "url", getattr(spec, "redis_url", None))
    if isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://")):
        with _redis_lock:
            guard = _redis_guards.get(url)
            if guard is None:
                guard = _redis_guards[url] = RedisGuard(url)
            return guard
    raise ConfigurationError(
        f"task guard {spec!r} is not supported; pass None (this process), a redis:// URL, "
        f"a RedisCacheAdapter or a Guard instance"
    )
