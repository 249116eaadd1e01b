"""The broker becomes unreachable while changes are dispatched, then comes back.

The test owns what it breaks: a TCP proxy in front of the machine's Redis, cut and restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from taskiq_redis import ListQueueBroker

import cachewire
from cachewire.dispatch import dispatch_stats
from cachewire.testing import RecordingFunction, TcpProxy, override_settings, unique_name
from cachewire_taskiq import TaskiqDispatcher

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def proxied_broker(taskiq_redis: str) -> Iterator[tuple[TcpProxy, Any]]:
    import cw_taskiq_apps

    with TcpProxy.for_url(taskiq_redis, 6379) as proxy:
        queue = unique_name(cw_taskiq_apps.QUEUE + "-outage")
        broker = ListQueueBroker(proxy.url_through(taskiq_redis), queue_name=queue)
        cw_taskiq_apps.outage_broker = broker
        yield proxy, queue
        del cw_taskiq_apps.outage_broker


def _queued(url: str, queue: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


@pytest.mark.parametrize("fallback", ["log", "inline"])
def test_an_unreachable_broker_never_breaks_the_change(
    proxied_broker: tuple[TcpProxy, str], taskiq_redis: str, fallback: str
) -> None:
    proxy, queue = proxied_broker
    target = RecordingFunction(unique_name("outage"), ("key",))
    settings = {"taskiq": {"BROKER": "cw_taskiq_apps:outage_broker", "SEND_TIMEOUT": 5}}
    with override_settings(dispatcher_settings=settings):
        cachewire.Rule(
            model="shop.Item",
            field_mapping={"key": "key"},
            dispatcher="taskiq",
            dispatcher_config={"fallback": fallback},
            function=target,
        )
        cachewire.changed("shop.Item", {"key": 1})
        assert _queued(taskiq_redis, queue) == 1

        proxy.cut()
        cachewire.changed("shop.Item", {"key": 2})  # no exception reaches the caller
        stats = dispatch_stats.snapshot()
        assert stats["dispatch_errors"] == 1
        assert target.calls == ([{"key": 2}] if fallback == "inline" else [])
        assert stats["fallbacks"] == (1 if fallback == "inline" else 0)

        proxy.restore()
        cachewire.changed("shop.Item", {"key": 3})
        assert TaskiqDispatcher.flush(10)
        assert _queued(taskiq_redis, queue) == 2  # delivered again once the broker is back


def test_with_the_raise_policy_the_caller_sees_a_dispatch_error(
    proxied_broker: tuple[TcpProxy, str],
) -> None:
    proxy, _ = proxied_broker
    target = RecordingFunction(unique_name("outage"), ("key",))
    settings = {"taskiq": {"BROKER": "cw_taskiq_apps:outage_broker", "RAISE_EXCEPTION": True}}
    with override_settings(dispatcher_settings=settings):
        cachewire.Rule(
            model="shop.Item", field_mapping={"key": "key"}, dispatcher="taskiq", function=target
        )
        proxy.cut()
        with pytest.raises(cachewire.errors.DispatchError):
            cachewire.changed("shop.Item", {"key": 1})
