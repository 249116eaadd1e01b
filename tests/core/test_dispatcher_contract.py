"""The built-in dispatchers, and one registered by a third party, pass the contract."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pytest

from cachewire import arun_work
from cachewire.dispatch import DispatchContext, Dispatcher, register_dispatcher
from cachewire.dispatchers import AsyncIODispatcher, ThreadPoolDispatcher
from cachewire.testing import DispatcherContract


class TestInline(DispatcherContract):
    expect_batching = True

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "inline"

    @pytest.fixture
    def wait_idle(self) -> Any:
        async def idle() -> None:
            return None

        return idle


class TestThreadPool(DispatcherContract):
    expect_batching = True

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "threadpool"

    @pytest.fixture
    def wait_idle(self) -> Any:
        async def idle() -> None:
            await asyncio.to_thread(ThreadPoolDispatcher.flush, 20)

        return idle


class TestAsyncIO(DispatcherContract):
    expect_batching = False

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "asyncio"

    @pytest.fixture
    def wait_idle(self) -> Any:
        return AsyncIODispatcher.drain


@register_dispatcher
class QueueDispatcher(Dispatcher):
    """A third-party style dispatcher: hands work to its own asyncio queue and worker."""

    name = "test-third-party-queue"
    supports_batching = True
    queue: asyncio.Queue[Any] | None = None

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
    ) -> None:
        assert type(self).queue is not None
        type(self).queue.put_nowait(self.encode_rules(rule_ids, rule_kwargs, context))

    def submit_task(self, message: Any) -> None:
        assert type(self).queue is not None
        type(self).queue.put_nowait(message.to_json())


class TestThirdParty(DispatcherContract):
    expect_batching = True

    @pytest.fixture
    def dispatcher(self) -> Any:
        return QueueDispatcher

    @pytest.fixture
    async def wait_idle(self) -> Any:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        QueueDispatcher.queue = queue

        async def worker() -> None:
            while True:
                item = await queue.get()
                try:
                    # A failure here is what the runtime would retry or dead-letter.
                    with contextlib.suppress(Exception):
                        await arun_work(item, dispatcher_name=QueueDispatcher.name)
                finally:
                    queue.task_done()

        runner = asyncio.create_task(worker())

        async def idle() -> None:
            await queue.join()

        yield idle
        runner.cancel()
