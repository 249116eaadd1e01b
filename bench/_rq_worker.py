"""The RQ settings module of bench/rq.py's worker: one rule whose invalidation is one Redis INCR.

Run as ``rq worker -P bench -c _rq_worker`` with ``CW_RQ_BENCH_URL`` set.
"""

from __future__ import annotations

import os
from typing import Any

import redis

from cachewire import Rule

URL = os.environ.get("CW_RQ_BENCH_URL", "redis://127.0.0.1:6379/0")
DONE = "bench:rq:invalidated"
_client = redis.Redis.from_url(URL)


class CountingTarget:
    """Stands for a cached function on Redis: each invalidation costs one round trip."""

    cache_id = "bench.rq.profile"
    parameters = ("user_id",)
    partition = ()

    def check_invalidation_params(self, names: Any) -> None:
        pass

    def invalidate(self, **kwargs: Any) -> None:
        _client.incr(DONE)

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


RULE = Rule(
    model="bench.User",
    field_mapping={"user_id": "id"},
    function=CountingTarget(),
    dispatcher="rq",
    name="bench.rq.profile_rule",
)


def count_one() -> None:
    """A plain RQ job doing what one invalidation does, without cachewire: the floor."""
    _client.incr(DONE)
