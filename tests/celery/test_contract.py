"""The dispatcher and task contracts on real Celery workers, on Redis and on RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from cachewire.testing import DispatcherContract


class _OnCelery(DispatcherContract):
    expect_batching = True

    @pytest.fixture
    def rig(self) -> Any:
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _current_app(self, rig: Any) -> Iterator[None]:
        rig.make_current()
        yield
        rig.inflight.wait_idle()

    @pytest.fixture
    def dispatcher(self) -> Any:
        return "celery"

    @pytest.fixture
    def wait_idle(self, rig: Any) -> Any:
        async def idle() -> None:
            await asyncio.to_thread(rig.inflight.wait_idle)

        return idle


class TestCeleryOnRedis(_OnCelery):
    @pytest.fixture
    def rig(self, redis_rig: Any) -> Any:
        return redis_rig


class TestCeleryOnRabbitMQ(_OnCelery):
    @pytest.fixture
    def rig(self, amqp_rig: Any) -> Any:
        return amqp_rig
