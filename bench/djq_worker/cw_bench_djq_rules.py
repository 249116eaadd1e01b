"""The rule of bench/django.py's django_q run: each invalidation is one INCR on the benchmark's
private Redis (``CW_DJQ_BENCH_URL``), which the producer watches."""

from __future__ import annotations

import os
from _common import CountingTarget
from cachewire import Rule

URL = os.environ.get("CW_DJQ_BENCH_URL", "redis://127.0.0.1:6379/0")
DONE = "bench:django_q:invalidated"
MODEL = "contenttypes.ContentType"  # installed everywhere; no row of it is ever written
TARGET = CountingTarget(URL, DONE, "bench.django_q.profile")


RULE = Rule(
    model=MODEL,
    field_mapping={"user_id": "id"},
    function=TARGET,
    dispatcher="django_q",
    name="bench.django_q.profile_rule",
)


def count_one() -> None:
    """A plain django-q task doing what one invalidation does, without cachewire: the floor."""
    TARGET.client.incr(DONE)
