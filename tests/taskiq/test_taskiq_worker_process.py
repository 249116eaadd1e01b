"""Real `taskiq worker` processes on the real Redis: the cache middleware across workers, rule
work and cachewire tasks through the ``taskiq`` dispatcher."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from taskiq import AsyncTaskiqTask

import cachewire
from cachewire.errors import TaskTimeoutError
from cachewire.testing import override_settings

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def worker(taskiq_redis: str) -> Iterator[Any]:
    """Two `taskiq worker` processes for the module; stopped at its end."""
    import cw_taskiq_apps

    here = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "cw_taskiq_apps:broker",
            "--workers",
            "2",
            "--log-level",
            "WARNING",
            "--no-configure-logging",
        ],
        cwd=here,
        env=env,
    )
    client = _redis()
    try:
        # Wait until both processes take work: each answers one message of its own.
        yield cw_taskiq_apps
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        client.close()


def _redis() -> Any:
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return redis.Redis.from_url(url, socket_timeout=60)


def _prefix() -> str:
    return os.environ["CW_TASKIQ_PREFIX"]


async def _wait(task: Any, timeout: float = 30) -> Any:
    return await task.wait_result(timeout=timeout)


async def test_identical_messages_on_two_workers_compute_once(worker: Any) -> None:
    client = _redis()
    gate = f"{_prefix()}:gate:once"
    try:
        await worker.broker.startup()
        sends = [await worker.slow_square.kiq(3, gate) for _ in range(10)]
        assert client.blpop([f"{_prefix()}:started"], timeout=30) is not None
        client.rpush(gate, "open")
        results = await asyncio.gather(*(_wait(s) for s in sends))
        assert [r.return_value for r in results] == [9] * 10
        assert int(client.get(f"{_prefix()}:runs:3")) == 1
        again = await _wait(await worker.slow_square.kiq(3, gate))
        assert again.return_value == 9
        assert int(client.get(f"{_prefix()}:runs:3")) == 1
    finally:
        await worker.broker.shutdown()
        client.close()


async def test_failures_are_cached_only_when_asked(worker: Any) -> None:
    client = _redis()
    try:
        await worker.broker.startup()
        for _ in range(2):
            assert (await _wait(await worker.fails.kiq(1))).is_err
        assert int(client.get(f"{_prefix()}:fails")) == 2
        for _ in range(2):
            kicker = worker.fails.kicker().with_labels(cache_errors="true")
            assert (await _wait(await kicker.kiq(2))).is_err
        assert int(client.get(f"{_prefix()}:fails")) == 3
    finally:
        await worker.broker.shutdown()
        client.close()


async def test_a_bad_label_that_reaches_a_worker_fails_the_task(worker: Any) -> None:
    from taskiq.kicker import AsyncKicker

    client = _redis()
    try:
        await worker.raw_sender.startup()
        kicker = AsyncKicker("cw.slow_square", worker.raw_sender, {"cache_ttl": "soon"})
        result = await _wait(await kicker.kiq(11, f"{_prefix()}:gate:never"))
        assert result.is_err
        assert "cache_ttl" in str(result.error)
        assert client.get(f"{_prefix()}:runs:11") is None
    finally:
        await worker.raw_sender.shutdown()
        client.close()


def test_rule_work_reaches_the_worker_process(worker: Any) -> None:
    client = _redis()
    done = f"{_prefix()}:done:cachewire.run_work"
    try:
        with override_settings(dispatcher_settings={"taskiq": {"BROKER": "cw_taskiq_apps:broker"}}):
            cachewire.Rule(
                model="shop.Order",
                field_mapping={"shop_id": "shop_id"},
                function=worker.shop_total,
                name="cw-shop",
                dispatcher="taskiq",
            )
            assert worker.shop_total(5) == 1
            assert worker.shop_total(5) == 1  # cached in Redis
            cachewire.changed("shop.Order", {"shop_id": 5})
            assert client.blpop([done], timeout=30) is not None
            assert worker.shop_total(5) == 2  # the worker invalidated the partition
    finally:
        client.close()


async def test_cachewire_tasks_run_on_the_worker_with_their_options(worker: Any) -> None:
    with override_settings(dispatcher_settings={"taskiq": {"BROKER": "cw_taskiq_apps:broker"}}):
        submitted = worker.bound.delay(4)
        slow = worker.too_slow.delay()
    bound = await _wait(AsyncTaskiqTask(submitted.uuid, worker.results))
    assert bound.return_value == {"uuid": submitted.uuid, "attempt": 1, "x": 4}
    timed_out = await _wait(AsyncTaskiqTask(slow.uuid, worker.results))
    assert timed_out.is_err
    assert isinstance(timed_out.error, TaskTimeoutError) or "TaskTimeoutError" in repr(
        timed_out.error
    )
