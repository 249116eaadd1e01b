"""What a shared task guard does while its Redis is down is the user's documented choice."""

from __future__ import annotations

from typing import Any

import pytest

from cachewire.errors import CacheBackendError, ConfigurationError
from cachewire.tasks import RedisGuard, reset_task_stats, task_stats

pytestmark = pytest.mark.redis


def _down_guard(private_redis: Any, policy: str) -> RedisGuard:
    guard = RedisGuard(private_redis.url, when_unavailable=policy, socket_timeout=1)
    assert guard.admit("probe", "discard", "{}") == "accepted"  # reachable at first
    assert guard.finish("probe") is None
    private_redis.stop()
    return guard


def test_raise_refuses_submissions_while_redis_is_down(private_redis: Any) -> None:
    guard = _down_guard(private_redis, "raise")
    with pytest.raises(CacheBackendError, match="task guard"):
        guard.admit("k", "discard", "{}")


def test_run_admits_every_submission_and_counts_it(private_redis: Any) -> None:
    reset_task_stats()
    guard = _down_guard(private_redis, "run")
    assert [guard.admit("k", "discard", "{}") for _ in range(3)] == ["accepted"] * 3
    assert guard.finish("k") is None
    assert task_stats()["guard_unavailable"] == 4


def test_local_keeps_the_policy_within_the_process(private_redis: Any) -> None:
    guard = _down_guard(private_redis, "local")
    assert guard.admit("k", "serial", "first") == "accepted"
    assert guard.admit("k", "serial", "second") == "queued"
    assert guard.admit("k", "discard", "third") == "discarded"
    assert guard.finish("k") == "second"


def test_an_unknown_choice_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="when_unavailable"):
        RedisGuard(redis_url, when_unavailable="sometimes")
