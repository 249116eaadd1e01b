"""The ``taskiq`` dispatcher passes the contract on the real Redis with a real taskiq receiver.

The receiver runs in this process (in a thread with its own event loop) because the contract's
recording functions live here; `test_worker_process.py` covers a `taskiq worker` process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cachewire.testing import DispatcherContract, override_settings
from cachewire_taskiq import TaskiqDispatcher

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def receiver(taskiq_redis: str) -> Iterator[Any]:
    """A taskiq receiver consuming the contract queue until the module's tests are done."""
    import cw_taskiq_apps
    from taskiq.api import run_receiver_task

    stop = threading.Event()
    ready = threading.Event()

    async def serve() -> None:
        await cw_taskiq_apps.consumer.startup()
        task = asyncio.create_task(
            run_receiver_task(cw_taskiq_apps.consumer, max_async_tasks=20, run_startup=False)
        )
        ready.set()
        await asyncio.to_thread(stop.wait)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cw_taskiq_apps.consumer.shutdown()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20)
    yield cw_taskiq_apps
    stop.set()
    thread.join(20)


class TestTaskiqOnRedis(DispatcherContract):
    expect_batching = True

    @pytest.fixture(autouse=True)
    def _settings(self, receiver: Any) -> Iterator[None]:
        with override_settings(
            dispatcher_settings={"taskiq": {"BROKER": "cw_taskiq_apps:producer"}}
        ):
            yield

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "taskiq"

    @pytest.fixture
    def wait_idle(self, receiver: Any) -> Any:
        progress = receiver.progress

        async def idle() -> None:
            def settle() -> None:
                # Held duplicates are sent by the worker when a run ends: wait until no send is
                # in flight and everything sent has finished.
                while True:
                    assert TaskiqDispatcher.flush(20)
                    with progress.condition:
                        sent = progress.sent
                    assert progress.wait_for(sent, 20), "the receiver did not finish the work"
                    # A run may have sent more while it ran (held duplicates, nested delays).
                    assert TaskiqDispatcher.flush(20)
                    with progress.condition:
                        if progress.sent == sent:
                            return

            await asyncio.to_thread(settle)

        return idle
