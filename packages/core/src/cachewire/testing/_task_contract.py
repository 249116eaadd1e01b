"""`TaskDispatchContract`: what every dispatcher that runs tasks must do.

Subclass it in a module pytest collects (name the subclass ``Test...``) and override:

- ``dispatcher``: a registered dispatcher name, a `Dispatcher` subclass or an instance;
- ``wait_idle``: an async callable returning once all work submitted so far has finished
  (including messages released by the duplicate guard). Make it depend on ``dispatcher`` when
  it needs the same instance.

The tests use async task bodies, a private named `TaskRegistry` and a private `LocalGuard`
per test, and need pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cachewire.dispatch import Dispatcher
from cachewire.tasks import LocalGuard, TaskContext, TaskRegistry, task

__all__ = ["TaskDispatchContract"]

WaitIdle = Callable[[], Awaitable[None]]


class _Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: list[Any] = []
        self.active = 0
        self.max_active = 0

    def enter(self, value: Any) -> None:
        with self.lock:
            self.runs.append(value)
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


#: policy -> (runs, outcomes of the four duplicates submitted while the first run is running)
_POLICIES = {
    "parallel": (5, ["accepted"] * 4),
    "discard": (1, ["discarded"] * 4),
    "serial": (5, ["queued"] * 4),
    "queue_one": (2, ["queued"] + ["discarded"] * 3),
}


@pytest.mark.timeout(30)
class TaskDispatchContract:
    """Conformance tests for `Dispatcher.submit_task`."""

    @pytest.fixture
    def dispatcher(self) -> str | Dispatcher | type[Dispatcher]:
        raise NotImplementedError("override the `dispatcher` fixture")

    @pytest.fixture
    def wait_idle(self) -> WaitIdle:
        raise NotImplementedError("override the `wait_idle` fixture")

    @pytest.fixture
    def task_registry(self) -> TaskRegistry:
        return TaskRegistry(f"contract-{uuid.uuid4().hex}")

    async def test_delay_runs_the_task(
        self, dispatcher: Any, wait_idle: WaitIdle, task_registry: TaskRegistry
    ) -> None:
        probe = _Probe()

        @task(name="contract.delay", registry=task_registry, dispatcher=dispatcher)
        async def work(a: int, b: int) -> None:
            probe.enter(a + b)
            probe.leave()

        result = work.delay(2, 3)
        assert result.outcome == "accepted"
        await wait_idle()
        assert probe.runs == [5]

    async def test_apply_async_runs_the_task(
        self, dispatcher: Any, wait_idle: WaitIdle, task_registry: TaskRegistry
    ) -> None:
        probe = _Probe()

        @task(name="contract.apply", registry=task_registry)
        async def work(a: int, *, b: int) -> None:
            probe.enter(a * b)
            probe.leave()

        result = work.apply_async((4,), {"b": 5}, dispatcher=dispatcher, queue="contract")
        assert result.outcome == "accepted"
        await wait_idle()
        assert probe.runs == [20]

    async def test_bind_gives_uuid_and_worker_id(
        self, dispatcher: Any, wait_idle: WaitIdle, task_registry: TaskRegistry
    ) -> None:
        seen: list[TaskContext] = []

        @task(name="contract.bind", registry=task_registry, dispatcher=dispatcher, bind=True)
        async def work(ctx: TaskContext, x: int) -> None:
            seen.append(ctx)

        result = work.delay(1)
        await wait_idle()
        (ctx,) = seen
        assert ctx.uuid == result.uuid
        assert ctx.task_name == "contract.bind"
        assert isinstance(ctx.worker_id, str)
        assert ctx.worker_id
        assert ctx.attempt >= 1

    @pytest.mark.parametrize("policy", sorted(_POLICIES))
    async def test_duplicate_policies(
        self, policy: str, dispatcher: Any, wait_idle: WaitIdle, task_registry: TaskRegistry
    ) -> None:
        probe = _Probe()
        outcomes: list[str] = []
        first = threading.Event()

        @task(
            name="contract.dup",
            registry=task_registry,
            dispatcher=dispatcher,
            on_duplicate=policy,
            guard=LocalGuard(),
        )
        async def work(x: int) -> None:
            probe.enter(x)
            try:
                if not first.is_set():
                    first.set()
                    # Four identical submissions while this first run is running.
                    outcomes.extend(work.delay(x).outcome for _ in range(4))
            finally:
                probe.leave()

        assert work.delay(7).outcome == "accepted"
        await wait_idle()
        runs, expected = _POLICIES[policy]
        assert outcomes == expected
        assert len(probe.runs) == runs
        if policy == "serial":
            assert probe.max_active == 1

    async def test_a_failing_task_does_not_break_the_submitter(
        self, dispatcher: Any, wait_idle: WaitIdle, task_registry: TaskRegistry
    ) -> None:
        probe = _Probe()

        @task(name="contract.fail", registry=task_registry, dispatcher=dispatcher)
        async def work(fail: bool) -> None:
            probe.enter(fail)
            probe.leave()
            if fail:
                raise RuntimeError("task failure the submitter must not see")

        assert work.delay(True).outcome == "accepted"
        await wait_idle()
        assert work.delay(False).outcome == "accepted"
        await wait_idle()
        assert probe.runs == [True, False]
