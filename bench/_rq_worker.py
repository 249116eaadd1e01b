"""The RQ settings module of bench/rq.py's worker: one rule whose invalidation is one Redis INCR.

Run as ``rq worker -P bench -c _rq_worker`` with ``CW_RQ_BENCH_URL`` set.
"""

from __future__ import annotations

import os
from _common import CountingTarget
from cachewire import Rule

URL = os.environ.get("CW_RQ_BENCH_URL", "redis://127.0.0.1:6379/0")
DONE = "bench:rq:invalidated"
TARGET = CountingTarget(URL, DONE, "bench.rq.profile")


RULE = Rule(
    model="bench.User",
    field_mapping={"user_id": "id"},
    function=TARGET,
    dispatcher="rq",
    name="bench.rq.profile_rule",
)


def count_one() -> None:
    """A plain RQ job doing what one invalidation does, without cachewire: the floor."""
    TARGET.client.incr(DONE)
