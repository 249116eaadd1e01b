"""Rules and tasks that the tests declare identically in their own process and in a Dramatiq
worker process (`dramatiq_worker_app`). Their effects are written to Redis under the run's
namespace (``CW_DRAMATIQ_NS``), so the test process can see what the worker did."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import redis

from cachewire import Rule, TaskContext, task
from cachewire.tasks import RedisGuard

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ["CW_DRAMATIQ_NS"]
QUEUE = os.environ.get("CW_DRAMATIQ_QUEUE", "cw_tests")

client = redis.Redis.from_url(REDIS_URL)


def key(name: str) -> str:
    """A Redis key of this run."""
    return f"{NAMESPACE}:app:{name}"


class RedisRecorder:
    """A stand-in cached function that appends each invalidation to a Redis list."""

    parameters = ("key",)
    partition = ()

    def __init__(self, name: str) -> None:
        self.cache_id = f"tests.{name}"
        self.list_key = key(name)

    def check_invalidation_params(self, names: Any) -> None:
        pass

    def invalidate(self, **kwargs: Any) -> None:
        client.rpush(self.list_key, json.dumps(kwargs, sort_keys=True))

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)

    def seen(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in client.lrange(self.list_key, 0, -1)]


_fast_retries = {"queue": QUEUE, "max_retries": 20, "min_backoff": 20, "max_backoff": 200}

logged = RedisRecorder("logged")
raised = RedisRecorder("raised")
fallback = RedisRecorder("fallback")


def declare_rules() -> None:
    """Declare this app's rules (again, after a test reset them)."""
    Rule(
        model="tests.Logged",
        field_mapping={"key": "key"},
        dispatcher="dramatiq",
        dispatcher_config=_fast_retries,
        function=logged,
        name="tests.logged",
    )
    Rule(
        model="tests.Raised",
        field_mapping={"key": "key"},
        dispatcher="dramatiq",
        dispatcher_config=_fast_retries,
        function=raised,
        raise_exception=True,
        name="tests.raised",
    )
    Rule(
        model="tests.Fallback",
        field_mapping={"key": "key"},
        dispatcher="dramatiq",
        dispatcher_config={**_fast_retries, "fallback": "inline"},
        function=fallback,
        name="tests.fallback",
    )


declare_rules()


@task(name="tests.slow", dispatcher="dramatiq", queue=QUEUE, timeout=0.3)
def slow() -> None:
    """Runs until Dramatiq's time limit stops it."""
    stop = threading.Event()
    client.rpush(key("slow-started"), "1")
    while not stop.wait(0.01):
        pass


@task(name="tests.whoami", dispatcher="dramatiq", queue=QUEUE, bind=True)
def whoami(ctx: TaskContext) -> None:
    client.rpush(key("whoami"), json.dumps({"uuid": ctx.uuid, "worker_id": ctx.worker_id}))


@task(
    name="tests.guarded",
    dispatcher="dramatiq",
    queue=QUEUE,
    on_duplicate="discard",
    guard=RedisGuard(REDIS_URL, prefix=f"{NAMESPACE}:guard:"),
)
def guarded(x: int) -> None:
    client.rpush(key("guarded-started"), x)
    for _ in range(20):  # short blocking reads: an idle blocked connection can be cut
        if client.blpop([key("guarded-release")], timeout=1) is not None:
            break
    client.rpush(key("guarded-done"), x)
