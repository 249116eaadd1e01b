"""The waiting machinery of the Redis adapter: a connection gate and pub/sub wake-ups."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from cachewire.cache._redis._core import BACKEND_ERRORS
from cachewire.cache._stats import CacheStats

__all__ = ["Drive", "Gate", "Pending", "SyncGate", "Wakeups"]


class Gate:
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


class Wakeups:
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
                # A bounded read: a socket timeout of the client must not end the subscription.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                announced = message["data"].decode()
                if announced == "*":  # tags were bumped: any lease may now be taken over
                    for waiters in list(self._waiting.values()):
                        for event in waiters:
                            event.set()
                    continue
                for event in self._waiting.get(announced, ()):
                    event.set()
        except BACKEND_ERRORS:
            self._stats.backend_errors += 1  # the waits fall back to their timeouts
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]


class Pending:
    """A caller's read of a key, then the work it started; callers arriving meanwhile wait for
    its answer. The future they wait on is made by the first of them, so a read nobody waits
    for costs none."""

    __slots__ = ("detached", "future", "tags")

    def __init__(self, tags: Sequence[str]) -> None:
        self.future: asyncio.Future[Any] | None = None
        self.tags = tags
        self.detached = False

    def waited(self) -> asyncio.Future[Any]:
        if self.future is None:
            self.future = asyncio.get_running_loop().create_future()
        return self.future


class Drive:
    """What one run of the core's steps keeps: the wake-up subscription, held from the first
    pause to the end, and the tickets of the last read script, creator start and write script.
    """

    __slots__ = ("tickets", "waits")

    def __init__(self, waits: contextlib.ExitStack) -> None:
        self.waits = waits
        self.tickets = {"read": 0, "computed": 0, "published": 0}


class SyncGate:
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
