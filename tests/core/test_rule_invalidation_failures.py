"""A rule's invalidation that cannot reach Redis is never silent, even where reads fail open."""

from __future__ import annotations

from typing import Any

import pytest

import cachewire
from cachewire.cache import RedisCacheAdapter, strict_invalidations
from cachewire.dispatch import dispatch_stats
from cachewire.errors import CacheBackendError
from cachewire.testing import reset_state

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _clean() -> Any:
    reset_state()
    yield
    reset_state()


def test_a_failed_invalidation_reaches_the_rule_error_policy(private_redis: Any) -> None:
    cache = RedisCacheAdapter(private_redis.url, namespace="rules-down", fail_open=True)

    @cachewire.cached(cache, partition=("shop_id",), name="tests.rules_down.total")
    def total(shop_id: int) -> int:
        return shop_id

    cachewire.Rule(model="shop.Order", field_mapping={"shop_id": "shop_id"}, function=total)
    assert total(1) == 1
    private_redis.stop()

    assert total(2) == 2  # reads fail open: the creator runs
    total.invalidate(shop_id=2)  # a direct call still fails open: counted, not raised

    cachewire.changed("shop.Order", {"shop_id": 1})  # the policy says log: no exception here
    stats = dispatch_stats.snapshot()
    assert stats["rule_errors"] == 1
    assert stats["invalidations"] == 0

    cachewire.configure(dispatcher_raise_exception=True)
    with pytest.raises(CacheBackendError):
        cachewire.changed("shop.Order", {"shop_id": 1})


def test_strict_invalidations_raise_only_inside_the_block(private_redis: Any) -> None:
    cache = RedisCacheAdapter(private_redis.url, namespace="strict-down", fail_open=True)
    private_redis.stop()
    assert cache.sync.invalidate("k") is False  # fail-open: counted, not raised
    with strict_invalidations(), pytest.raises(CacheBackendError):
        cache.sync.invalidate("k")
    assert cache.sync.invalidate("k") is False
