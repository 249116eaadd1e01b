"""The middleware pipeline and CacheMiddleware."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from cachewire._settings import configure, reset_settings
from cachewire.cache import MISSING, BaseCacheAdapter, SyncCacheAdapter
from cachewire.dispatch import Dispatcher
from cachewire.errors import CachedTaskError, ConfigurationError, TaskError
from cachewire.tasks import (
    CacheMiddleware,
    Middleware,
    SubmitResult,
    TaskContext,
    TaskMessage,
    TaskRegistry,
    arun_task,
    run_task,
    task,
)

pytestmark = pytest.mark.timeout(20)


class _FakeSync(SyncCacheAdapter):
    def __init__(self, adapter: FakeCache) -> None:
        self._adapter = adapter
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get_or_create(self, key: str, creator: Any, ttl_seconds: Any = MISSING, **kw: Any) -> Any:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            store = self._adapter.store  # type: ignore[attr-defined]
            if key in store:
                return store[key]
            value = creator()
            if ttl_seconds != 0:
                store[key] = value
                self._adapter.ttls[key] = ttl_seconds  # type: ignore[attr-defined]
            return value

    def get(self, key: str, default: Any = None, **kw: Any) -> Any:
        return self._adapter.store.get(key, default)  # type: ignore[attr-defined]

    def set(self, key: str, value: Any, ttl_seconds: Any = MISSING, **kw: Any) -> None:
        self._adapter.store[key] = value  # type: ignore[attr-defined]

    def invalidate(self, key: str) -> bool:
        return self._adapter.store.pop(key, MISSING) is not MISSING  # type: ignore[attr-defined]

    def invalidate_tags(self, tags: Sequence[str]) -> None: ...

    def clear(self) -> None:
        self._adapter.store.clear()  # type: ignore[attr-defined]


class FakeCache(BaseCacheAdapter):
    """A dict with async single flight, enough to drive CacheMiddleware."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}
        self.ttls: dict[str, Any] = {}
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._sync = _FakeSync(self)

    async def get_or_create(
        self, key: str, creator: Any, ttl_seconds: Any = MISSING, **kw: Any
    ) -> Any:
        if key in self.store:
            return self.store[key]
        if key in self._flights:
            return await asyncio.shield(self._flights[key])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            value = creator()
            if inspect.isawaitable(value):
                value = await value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._flights[key]
        if ttl_seconds != 0:
            self.store[key] = value
            self.ttls[key] = ttl_seconds
        future.set_result(value)
        return value

    async def get(self, key: str, default: Any = None, **kw: Any) -> Any:
        return self.store.get(key, default)

    async def set(self, key: str, value: Any, ttl_seconds: Any = MISSING, **kw: Any) -> None:
        self.store[key] = value

    async def invalidate(self, key: str) -> bool:
        return self.store.pop(key, MISSING) is not MISSING

    async def invalidate_tags(self, tags: Sequence[str]) -> None: ...

    async def clear(self) -> None:
        self.store.clear()

    def get_stats(self) -> dict[str, Any]:
        return {"size": len(self.store)}

    @property
    def sync(self) -> SyncCacheAdapter:
        return self._sync


class Recorder(Dispatcher):
    """Keeps messages; the test runs them."""

    name = "test-middleware-recorder"
    can_enforce_timeout = True

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.messages: list[TaskMessage] = []

    def dispatch(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def submit_task(self, message: TaskMessage) -> None:
        self.messages.append(message)


class Tracing(Middleware):
    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag = tag
        self.log = log

    def before_submit(self, message: TaskMessage) -> None:
        self.log.append(f"{self.tag}.before_submit")

    def after_submit(self, message: TaskMessage, result: SubmitResult) -> None:
        self.log.append(f"{self.tag}.after_submit:{result.outcome}")

    def before_execute(self, ctx: TaskContext) -> None:
        self.log.append(f"{self.tag}.before_execute")

    def after_execute(self, ctx: TaskContext, result: Any, error: BaseException | None) -> None:
        self.log.append(f"{self.tag}.after_execute:{result}:{type(error).__name__}")

    def around_execute(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        self.log.append(f"{self.tag}.around<")
        value = call_next()
        self.log.append(f"{self.tag}.around>")
        return value

    async def aaround_execute(
        self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]
    ) -> Any:
        self.log.append(f"{self.tag}.around<")
        value = await call_next()
        self.log.append(f"{self.tag}.around>")
        return value


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry(f"mw-{os.urandom(4).hex()}")


@pytest.fixture(autouse=True)
def _reset() -> Any:
    yield
    reset_settings()


PIPELINE = [
    "a.before_submit",
    "b.before_submit",
    "a.after_submit:accepted",
    "b.after_submit:accepted",
    "a.before_execute",
    "b.before_execute",
    "a.around<",
    "b.around<",
    "body",
    "b.around>",
    "a.around>",
    "a.after_execute:3:NoneType",
    "b.after_execute:3:NoneType",
]


def test_hooks_run_in_order_for_sync_bodies(registry: TaskRegistry) -> None:
    log: list[str] = []
    dispatcher = Recorder()

    @task(
        name="s",
        registry=registry,
        dispatcher=dispatcher,
        middlewares=[Tracing("a", log), Tracing("b", log)],
    )
    def body(x: int) -> int:
        log.append("body")
        return x + 1

    body.delay(2)
    assert run_task(dispatcher.messages[0], registry=registry) == 3
    assert log == PIPELINE


async def test_hooks_run_in_order_for_async_bodies(registry: TaskRegistry) -> None:
    log: list[str] = []
    dispatcher = Recorder()

    @task(
        name="a",
        registry=registry,
        dispatcher=dispatcher,
        middlewares=[Tracing("a", log), Tracing("b", log)],
    )
    async def body(x: int) -> int:
        log.append("body")
        return x + 1

    body.delay(2)
    assert await arun_task(dispatcher.messages[0], registry=registry) == 3
    assert log == PIPELINE


def test_after_execute_sees_the_error(registry: TaskRegistry) -> None:
    log: list[str] = []

    @task(name="e", registry=registry, middlewares=[Tracing("a", log)])
    def body() -> None:
        raise KeyError("x")

    assert run_task(TaskMessage(name="e"), registry=registry) is None
    assert log[-1] == "a.after_execute:None:KeyError"


def test_around_can_short_circuit(registry: TaskRegistry) -> None:
    class Short(Middleware):
        def around_execute(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
            return "short"

    @task(name="sc", registry=registry, middlewares=[Short()])
    def body() -> str:
        raise AssertionError("must not run")

    assert run_task(TaskMessage(name="sc"), registry=registry, raise_errors=True) == "short"


def test_cache_middleware_serves_identical_calls_from_the_cache(registry: TaskRegistry) -> None:
    cache = FakeCache()
    runs: list[int] = []

    @task(name="c", registry=registry, middlewares=[CacheMiddleware(cache)])
    def body(x: int) -> int:
        runs.append(x)
        return x * 10

    first, second = TaskMessage(name="c", args=(1,)), TaskMessage(name="c", args=(1,))
    assert first.uuid != second.uuid
    assert run_task(first, registry=registry) == 10
    assert run_task(second, registry=registry) == 10
    assert run_task(TaskMessage(name="c", args=(2,)), registry=registry) == 20
    assert runs == [1, 2]
    assert set(cache.ttls.values()) == {3600.0}
    assert not any(first.uuid in key for key in cache.store)


@pytest.mark.parametrize("ttl", [0, "0"])
def test_cache_ttl_zero_does_not_cache(registry: TaskRegistry, ttl: Any) -> None:
    cache = FakeCache()
    runs: list[int] = []

    @task(name="z", registry=registry, middlewares=[CacheMiddleware(cache)])
    def body() -> int:
        runs.append(1)
        return 1

    for _ in range(2):
        run_task(TaskMessage(name="z", labels={"cache_ttl": ttl}), registry=registry)
    assert len(runs) == 2
    assert cache.store == {}


async def test_cache_ttl_label_sets_the_ttl(registry: TaskRegistry) -> None:
    cache = FakeCache()

    @task(name="t", registry=registry, middlewares=[CacheMiddleware(cache)])
    async def body() -> int:
        return 1

    await arun_task(TaskMessage(name="t", labels={"cache_ttl": "42"}), registry=registry)
    assert list(cache.ttls.values()) == [42.0]


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({"cache_ttl": "soon"}, "cache_ttl='soon'"),
        ({"cache_ttl": -1}, "cache_ttl=-1"),
        ({"cache_ttl": True}, "cache_ttl=True"),
        ({"cache_ttl": "nan"}, "cache_ttl='nan'"),
        ({"cache_errors": "sometimes"}, "cache_errors='sometimes'"),
        ({"cache_errors": 2}, "cache_errors=2"),
    ],
)
async def test_a_bad_label_is_a_clear_error_at_submit_and_at_run(
    registry: TaskRegistry, labels: dict[str, Any], named: str
) -> None:
    cache = FakeCache()
    ran: list[int] = []

    @task(name="w", registry=registry, middlewares=[CacheMiddleware(cache, default_ttl=7)])
    async def body() -> int:
        ran.append(1)
        return 1

    with pytest.raises(ConfigurationError, match=re.escape(named)):
        body.apply_async(labels=labels)
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        await arun_task(TaskMessage(name="w", labels=labels), registry=registry, raise_errors=True)
    assert ran == []
    assert cache.ttls == {}


@pytest.mark.parametrize("flag", ["true", True, 1])
def test_cache_errors_replays_a_failure_as_cached_task_error(
    registry: TaskRegistry, flag: Any
) -> None:
    cache = FakeCache()
    runs: list[int] = []

    @task(name="ce", registry=registry, middlewares=[CacheMiddleware(cache)])
    def body() -> None:
        runs.append(1)
        raise ValueError("bad input")

    message = TaskMessage(name="ce", labels={"cache_errors": flag})
    with pytest.raises(ValueError, match="bad input"):
        run_task(message, registry=registry, raise_errors=True)
    with pytest.raises(CachedTaskError, match="bad input") as info:
        run_task(
            TaskMessage(name="ce", labels={"cache_errors": flag}),
            registry=registry,
            raise_errors=True,
        )
    assert isinstance(info.value, TaskError)
    assert info.value.error_type == "ValueError"
    assert runs == [1]


def test_errors_are_not_cached_by_default(registry: TaskRegistry) -> None:
    cache = FakeCache()
    runs: list[int] = []

    @task(name="nc", registry=registry, middlewares=[CacheMiddleware(cache)])
    def body() -> None:
        runs.append(1)
        raise ValueError("bad")

    for _ in range(2):
        run_task(TaskMessage(name="nc"), registry=registry)
    assert runs == [1, 1]
    assert cache.store == {}


def test_disabled_cache_middleware_runs_every_time(registry: TaskRegistry) -> None:
    cache = FakeCache()
    runs: list[int] = []

    @task(name="off", registry=registry, middlewares=[CacheMiddleware(cache, enabled=False)])
    def body() -> None:
        runs.append(1)

    for _ in range(2):
        run_task(TaskMessage(name="off"), registry=registry)
    assert runs == [1, 1]


def test_default_cache_setting_and_missing_cache(registry: TaskRegistry) -> None:
    @task(name="dc", registry=registry, middlewares=[CacheMiddleware()])
    def body() -> int:
        return 5

    with pytest.raises(ConfigurationError, match="default_cache"):
        run_task(TaskMessage(name="dc"), registry=registry, raise_errors=True)
    cache = FakeCache()
    configure(default_cache=cache)
    assert run_task(TaskMessage(name="dc"), registry=registry) == 5
    assert len(cache.store) == 1


async def test_ten_identical_concurrent_runs_execute_the_body_once(
    registry: TaskRegistry,
) -> None:
    cache = FakeCache()
    entered = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @task(name="flight", registry=registry, middlewares=[CacheMiddleware(cache)])
    async def body(x: int) -> int:
        runs.append(x)
        entered.set()
        await release.wait()
        return x + 1

    tasks = [
        asyncio.create_task(arun_task(TaskMessage(name="flight", args=(1,)), registry=registry))
        for _ in range(10)
    ]
    await entered.wait()
    # Every run must be waiting on the one computation before it may finish.
    for _ in range(10):
        await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*tasks) == [2] * 10
    assert runs == [1]
