"""Rules and tasks declared the same way in the test process and in worker processes.

Invalidations and task runs are recorded in a Redis list (``CW_RECORD_URL``/``CW_RECORD_KEY``) so
a test in another process can wait for them with a blocking pop.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

import cachewire
import cachewire_celery  # noqa: F401  (the celery dispatcher)
from cachewire import Rule, TaskContext

FAULT_MODEL = "celery-tests.Item"


class RedisRecorder:
    """A stand-in cached function that appends each invalidation to a Redis list."""

    cache_id = "celery-tests.recorder"

    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.key = f"{key}:invalidated"

    def check_invalidation_params(self, names: Any) -> None:
        return None

    def invalidate(self, **kwargs: Any) -> None:
        self.client.rpush(self.key, json.dumps(kwargs, sort_keys=True))

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


#: Rule variants: the raise policy each has (workers declare them all, a test one of them).
VARIANTS = {"raise": True, "log": False, "remote": True}


def model_for(variant: str) -> str:
    return f"{FAULT_MODEL}.{variant}"


def declare_rule(target: Any, variant: str, **options: Any) -> Rule:
    """One rule of the variant; its explicit name is its id in every process."""
    return Rule(
        model=model_for(variant),
        field_mapping={"key": "key"},
        dispatcher="celery",
        name=f"celery-tests.{variant}",
        raise_exception=VARIANTS[variant],
        function=target,
        **options,
    )


def record(event: str, **data: Any) -> None:
    """Append ``data`` to the list ``<CW_RECORD_KEY>:<event>``."""
    client = redis.Redis.from_url(os.environ["CW_RECORD_URL"])
    client.rpush(f"{os.environ['CW_RECORD_KEY']}:{event}", json.dumps(data, sort_keys=True))


@cachewire.task(name="celery-tests.sleepy", dispatcher="celery", timeout=1)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@cachewire.task(name="celery-tests.whoami", dispatcher="celery", bind=True)
def whoami(ctx: TaskContext) -> dict[str, Any]:
    return {"uuid": ctx.uuid, "worker_id": ctx.worker_id, "attempt": ctx.attempt}


@cachewire.task(name="celery-tests.exclusive", dispatcher="celery", on_duplicate="discard")
def exclusive(gate: str) -> str:
    """Runs until the test pushes to ``gate``; duplicates meanwhile are discarded cluster-wide."""
    client = redis.Redis.from_url(os.environ["CW_RECORD_URL"], socket_timeout=60)
    record("exclusive-started", gate=gate)
    client.blpop([gate], timeout=30)
    return "done"


@cachewire.task(name="celery-tests.serial", dispatcher="celery", on_duplicate="serial")
def serial_step(gate: str) -> str:
    """Runs until the test pushes to ``gate``; duplicates meanwhile wait their turn."""
    client = redis.Redis.from_url(os.environ["CW_RECORD_URL"], socket_timeout=60)
    record("serial-started", gate=gate)
    client.blpop([gate], timeout=30)
    return "done"
