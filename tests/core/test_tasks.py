"""@task basics: direct calls, submission, bind context, names, registries, runner, timeouts."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachewire._settings import configure, reset_settings
from cachewire.dispatch import Dispatcher, register_dispatcher
from cachewire.errors import (
    ConfigurationError,
    PayloadError,
    TaskError,
    TaskTimeoutError,
    UnknownTaskError,
)
from cachewire.tasks import (
    TaskContext,
    TaskMessage,
    TaskRegistry,
    arun_task,
    reset_task_stats,
    run_task,
    task,
    task_stats,
)
from cachewire.testing._task_contract import TaskDispatchContract

pytestmark = pytest.mark.timeout(20)


@register_dispatcher
class RunInline(Dispatcher):
    """Runs each task message at once in the submitting thread, keeping the results."""

    name = "test-tasks-inline"
    results: ClassVar[list[Any]] = []

    def dispatch(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def submit_task(self, message: TaskMessage) -> None:
        self.results.append(run_task(message))


@register_dispatcher
class RunOnLoop(Dispatcher):
    """Schedules each message on the running loop (can enforce a timeout)."""

    name = "test-tasks-loop"
    can_enforce_timeout = True

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.futures: list[asyncio.Task[Any]] = []

    def dispatch(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def submit_task(self, message: TaskMessage) -> None:
        self.futures.append(asyncio.get_running_loop().create_task(arun_task(message)))


@pytest.fixture(autouse=True)
def _clean() -> Any:
    RunInline.results.clear()
    reset_task_stats()
    yield
    reset_settings()


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry(f"test-tasks-{os.urandom(4).hex()}")


def test_direct_call_runs_the_function_without_dispatching(registry: TaskRegistry) -> None:
    @task(name="direct", registry=registry, dispatcher=RunInline)
    def double(x: int) -> int:
        return x * 2

    assert double(21) == 42
    assert RunInline.results == []


async def test_direct_call_of_an_async_task_returns_its_coroutine(registry: TaskRegistry) -> None:
    @task(name="adirect", registry=registry)
    async def double(x: int) -> int:
        return x * 2

    assert await double(4) == 8


def test_bare_decorator_names_the_task_by_module_and_qualname() -> None:
    assert module_level_task.name == f"{__name__}.module_level_task"
    assert module_level_task.name in module_level_task.registry
    assert module_level_task(1) == 2


@task
def module_level_task(x: int) -> int:
    return x + 1


def test_delay_submits_through_the_dispatcher(registry: TaskRegistry) -> None:
    @task(name="add", registry=registry, dispatcher=RunInline)
    def add(a: int, b: int) -> int:
        return a + b

    result = add.delay(2, 3)
    assert result.outcome == "accepted"
    assert result.message.uuid == result.uuid
    assert RunInline.results == [5]
    assert add.apply_async((1,), {"b": 1}).outcome == "accepted"
    assert RunInline.results == [5, 2]


def test_settings_default_dispatcher_is_used(registry: TaskRegistry) -> None:
    configure(default_dispatcher=RunInline.name)

    @task(name="via-settings", registry=registry)
    def one() -> int:
        return 1

    one.delay()
    assert RunInline.results == [1]


def test_bind_passes_the_context_first(registry: TaskRegistry) -> None:
    @task(name="bound", registry=registry, dispatcher=RunInline, bind=True, queue="q1")
    def bound(ctx: TaskContext, x: int) -> TaskContext:
        return ctx

    submitted = bound.delay(7)
    (ctx,) = RunInline.results
    assert isinstance(ctx, TaskContext)
    assert ctx.uuid == submitted.uuid
    assert ctx.task_name == "bound"
    assert ctx.queue == "q1"
    assert ctx.attempt == 1
    assert ctx.worker_id.split(":")[1] == str(os.getpid())
    assert ctx.worker_id.endswith(str(threading.get_ident()))


def test_lambdas_and_local_functions_need_a_name(registry: TaskRegistry) -> None:
    with pytest.raises(ConfigurationError, match="name="):
        task(registry=registry)(lambda: 1)

    def local() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="name="):
        task(registry=registry)(local)
    assert task(registry=registry, name="named-lambda")(lambda: 1).name == "named-lambda"


def test_two_functions_cannot_share_a_name(registry: TaskRegistry) -> None:
    task(name="same", registry=registry)(lambda: 1)
    with pytest.raises(ConfigurationError, match="already registered"):
        task(name="same", registry=registry)(lambda: 2)


def test_custom_registry_is_isolated_from_the_global_one(registry: TaskRegistry) -> None:
    @task(name="isolated", registry=registry, dispatcher=RunInline)
    def isolated() -> str:
        return "ran"

    message = TaskMessage(name="isolated")
    with pytest.raises(UnknownTaskError):
        run_task(message, raise_errors=True)
    assert run_task(message, registry=registry) == "ran"
    isolated.delay()
    assert RunInline.results == ["ran"]


def test_unregistered_names_are_refused_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A dotted path of a real callable must not be imported or evaluated.
    message = TaskMessage(name="os.system", args=("echo should-not-run",))
    with caplog.at_level(logging.ERROR, logger="cachewire.tasks"):
        assert run_task(message) is None
    assert "os.system" in caplog.text
    assert task_stats()["unknown"] == 1
    with pytest.raises(UnknownTaskError, match=r"os\.system"):
        run_task(message.to_json(), raise_errors=True)


async def test_unregistered_names_are_refused_by_arun_task() -> None:
    with pytest.raises(UnknownTaskError):
        await arun_task(TaskMessage(name="builtins.eval", args=("1",)), raise_errors=True)


def test_message_round_trips_through_json() -> None:
    message = TaskMessage(
        name="n", args=(1, "a"), kwargs={"k": [1]}, queue="", timeout=0, labels={"x": "1"}
    )
    assert TaskMessage.from_json(message.to_json()) == message
    with pytest.raises(TaskError):
        TaskMessage(name="n", args=(object(),)).to_json()
    with pytest.raises(PayloadError):
        TaskMessage.from_json('{"name": "n", "evil": 1}')


def test_duplicate_key_ignores_uuid_and_kwarg_order() -> None:
    a = TaskMessage(name="n", args=(1,), kwargs={"a": 1, "b": 2})
    b = TaskMessage(name="n", args=(1,), kwargs={"b": 2, "a": 1})
    assert a.uuid != b.uuid
    assert a.duplicate_key == b.duplicate_key
    assert a.duplicate_key != TaskMessage(name="n", args=(2,)).duplicate_key


def test_non_json_arguments_are_refused_at_submit(registry: TaskRegistry) -> None:
    @task(name="nonjson", registry=registry, dispatcher=RunInline)
    def f(x: Any) -> None: ...

    with pytest.raises(TaskError, match="cannot travel"):
        f.delay(object())


def test_a_failing_task_is_logged_and_counted_not_raised_to_the_submitter(
    registry: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    @task(name="boom", registry=registry, dispatcher=RunInline)
    def boom() -> None:
        raise RuntimeError("kaput")

    with caplog.at_level(logging.ERROR, logger="cachewire.tasks"):
        assert boom.delay().outcome == "accepted"
    assert "kaput" in caplog.text
    assert task_stats()["failed"] == 1
    with pytest.raises(RuntimeError, match="kaput"):
        run_task(TaskMessage(name="boom", registry=registry.name), raise_errors=True)


def test_run_task_runs_async_bodies_without_a_loop(registry: TaskRegistry) -> None:
    @task(name="async-body", registry=registry)
    async def body(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert run_task(TaskMessage(name="async-body", args=(1,)), registry=registry) == 2


async def test_run_task_runs_async_bodies_while_a_loop_runs(registry: TaskRegistry) -> None:
    @task(name="async-body-loop", registry=registry)
    async def body(x: int) -> int:
        return x + 1

    assert run_task(TaskMessage(name="async-body-loop", args=(1,)), registry=registry) == 2


async def test_arun_task_enforces_the_timeout(registry: TaskRegistry) -> None:
    never = asyncio.Event()

    @task(name="slow", registry=registry, dispatcher=RunOnLoop, timeout=0.05)
    async def slow() -> None:
        await never.wait()

    with pytest.raises(TaskTimeoutError, match="slow"):
        await arun_task(
            TaskMessage(name="slow", timeout=0.05), registry=registry, raise_errors=True
        )
    assert task_stats()["timed_out"] == 1
    assert await arun_task(TaskMessage(name="slow", timeout=0.05), registry=registry) is None
    assert task_stats()["timed_out"] == 2


async def test_timeout_through_a_loop_dispatcher(registry: TaskRegistry) -> None:
    never = asyncio.Event()
    dispatcher = RunOnLoop()

    @task(name="slow2", registry=registry, dispatcher=dispatcher)
    async def slow() -> None:
        await never.wait()

    slow.apply_async(timeout=0.05)
    await asyncio.gather(*dispatcher.futures)
    assert task_stats()["timed_out"] == 1


def test_timeout_on_a_dispatcher_that_cannot_enforce_it_is_refused(
    registry: TaskRegistry,
) -> None:
    with pytest.raises(ConfigurationError, match=RunOnLoop.name) as info:
        task(name="t1", registry=registry, dispatcher=RunInline, timeout=5)(lambda: 1)
    assert RunInline.name in str(info.value)

    # Dispatcher only known at submit time (settings):
    configure(default_dispatcher=RunInline.name)
    t2 = task(name="t2", registry=registry, timeout=5)(lambda: 1)
    with pytest.raises(ConfigurationError, match=RunOnLoop.name):
        t2.delay()
    # ... and per call:
    t3 = task(name="t3", registry=registry)(lambda: 1)
    with pytest.raises(ConfigurationError, match="timeout"):
        t3.apply_async(timeout=1)
    # timeout=0 disables the timeout, so any dispatcher may run it.
    t3.apply_async(timeout=0)
    assert RunInline.results == [1]


def test_invalid_options_are_refused(registry: TaskRegistry) -> None:
    with pytest.raises(ConfigurationError, match="on_duplicate"):
        task(name="bad1", registry=registry, on_duplicate="sometimes")(lambda: 1)
    with pytest.raises(ConfigurationError, match="timeout"):
        task(name="bad2", registry=registry, timeout=-1)(lambda: 1)
    t = task(name="ok", registry=registry, dispatcher=RunInline)(lambda: 1)
    with pytest.raises(ConfigurationError, match="queue_name") as info:
        t.apply_async(queue_name="x")
    assert "on_duplicate" in str(info.value)


@register_dispatcher
class ThreadPerTask(Dispatcher):
    """Runs each message on its own thread."""

    name = "test-tasks-threads"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.pending = 0
        self.idle = threading.Condition()

    def dispatch(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def submit_task(self, message: TaskMessage) -> None:
        with self.idle:
            self.pending += 1
        threading.Thread(target=self._run, args=(message,)).start()

    def _run(self, message: TaskMessage) -> None:
        try:
            run_task(message)
        finally:
            with self.idle:
                self.pending -= 1
                self.idle.notify_all()


class TestContractInline(TaskDispatchContract):
    @pytest.fixture
    def dispatcher(self) -> Any:
        return RunInline

    @pytest.fixture
    def wait_idle(self) -> Any:
        async def idle() -> None:
            return None

        return idle


class TestContractThreads(TaskDispatchContract):
    @pytest.fixture
    def dispatcher(self) -> Any:
        return ThreadPerTask()

    @pytest.fixture
    def wait_idle(self, dispatcher: ThreadPerTask) -> Any:
        async def idle() -> None:
            def wait() -> None:
                with dispatcher.idle:
                    assert dispatcher.idle.wait_for(lambda: dispatcher.pending == 0, 15)

            await asyncio.to_thread(wait)

        return idle


class TestContractLoop(TaskDispatchContract):
    @pytest.fixture
    def dispatcher(self) -> Any:
        return RunOnLoop()

    @pytest.fixture
    def wait_idle(self, dispatcher: RunOnLoop) -> Any:
        async def idle() -> None:
            while not all(f.done() for f in dispatcher.futures):
                await asyncio.gather(*dispatcher.futures)

        return idle


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(
    args=st.lists(json_values, max_size=4),
    kwargs=st.dictionaries(st.text(), json_values, max_size=4),
    queue=st.none() | st.text(),
)
def test_messages_round_trip_and_keys_are_stable(
    args: list[Any], kwargs: dict[str, Any], queue: str | None
) -> None:
    message = TaskMessage(name="prop", args=args, kwargs=kwargs, queue=queue)
    decoded = TaskMessage.from_json(message.to_json())
    assert decoded == message
    assert decoded.duplicate_key == message.duplicate_key
    reordered = TaskMessage(name="prop", args=args, kwargs=dict(reversed(list(kwargs.items()))))
    assert reordered.duplicate_key == message.duplicate_key


def test_an_unknown_guarded_message_frees_its_duplicate_key() -> None:
    from cachewire.tasks._guard import resolve_guard

    guard = resolve_guard(None)
    message = TaskMessage(
        name="nowhere.to.be.found", args=(os.urandom(4).hex(),), on_duplicate="serial"
    )
    assert guard.admit(message.duplicate_key, "serial", message.to_json()) == "accepted"
    assert guard.admit(message.duplicate_key, "serial", "held") == "queued"
    assert run_task(message) is None
    assert guard.admit(message.duplicate_key, "discard", message.to_json()) == "accepted"
    assert guard.finish(message.duplicate_key) is None


def test_public_names_exist() -> None:
    import cachewire.tasks

    assert sorted(cachewire.tasks.__all__) == sorted(set(cachewire.tasks.__all__))
    for public in cachewire.tasks.__all__:
        assert getattr(cachewire.tasks, public) is not None


class TestContractBuiltinInline(TaskDispatchContract):
    @pytest.fixture
    def dispatcher(self) -> Any:
        import importlib

        if not hasattr(importlib.import_module("cachewire.dispatch"), "get_dispatcher"):
            pytest.skip("the dispatcher registry (cachewire.dispatch.get_dispatcher) is missing")
        return "inline"

    @pytest.fixture
    def wait_idle(self) -> Any:
        async def idle() -> None:
            return None

        return idle


def test_unnamed_registries_work_in_process() -> None:
    registry = TaskRegistry()

    @task(name="anon", registry=registry, dispatcher=RunInline)
    def anon() -> str:
        return "anon"

    result = anon.delay()
    assert result.message.registry == registry.key
    assert RunInline.results == ["anon"]
