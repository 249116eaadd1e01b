"""The rule of bench/django.py's django_q run: each invalidation is one INCR on the benchmark's
private Redis (``CW_DJQ_BENCH_URL``), which the producer watches."""

from __future__ import annotations

import os
from typing import Any

import redis

from cachewire import Rule

URL = os.environ.get("CW_DJQ_BENCH_URL", "redis://127.0.0.1:6379/0")
DONE = "bench:django_q:invalidated"
MODEL = "contenttypes.ContentType"  # installed everywhere; no row of it is ever written
_client = redis.Redis.from_url(URL)


class CountingTarget:
    """Stands for a cached function on Redis: each invalidation costs one round trip."""

    cache_id = "bench.django_q.profile"
    parameters = ("user_id",)
    partition = ()

    def check_invalidation_params(self, names: Any) -> None:
        pass

    def invalidate(self, **kwargs: Any) -> None:
        _client.incr(DONE)

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


RULE = Rule(
    model=MODEL,
    field_mapping={"user_id": "id"},
    function=CountingTarget(),
    dispatcher="django_q",
    name="bench.django_q.profile_rule",
)


def count_one() -> None:
    """A plain django-q task doing what one invalidation does, without cachewire: the floor."""
    _client.incr(DONE)
