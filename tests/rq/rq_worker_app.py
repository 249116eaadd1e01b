"""What the RQ worker processes of these tests run: rules and tasks, and their settings.

Imported by ``rq worker -P tests/rq -c rq_worker_app`` (an RQ settings module) and by the tests,
which submit to it. Every target reports to Redis lists named after a ``run`` argument, so a test
waits on its own events.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

import cachewire
from cachewire import Rule, TaskContext, task
from cachewire.rules import get_rule

URL = os.environ.get("CW_RQ_TEST_URL", "redis://127.0.0.1:6379/0")
_client = redis.Redis.from_url(URL)


def redis_client() -> redis.Redis:
    """The client targets report through (on the worker's database)."""
    return _client


def events(run: str) -> str:
    """The list a target pushes its events to for one test."""
    return f"cw-test:{run}:events"


def configure_worker(url: str) -> None:
    cachewire.configure(dispatcher_settings={"rq": {"URL": url}}, task_guard=url)


class ReportingTarget:
    """A rule target that pushes each invalidation to Redis; it fails the first ``fail`` times."""

    def __init__(self, cache_id: str) -> None:
        self.cache_id = cache_id
        self.parameters = ("run", "user_id", "fail")
        self.partition = ()

    def check_invalidation_params(self, names: Any) -> None:
        pass

    def invalidate(self, *, run: str, user_id: int, fail: int = 0) -> None:
        attempt = _client.incr(f"cw-test:{run}:attempts:{user_id}")
        if attempt <= fail:
            _client.rpush(events(run), f"failed:{user_id}")
            raise ConnectionError(f"cache backend down (attempt {attempt})")
        _client.rpush(events(run), f"invalidated:{user_id}")

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


profile = ReportingTarget("rq_test.profile")
account = ReportingTarget("rq_test.account")
MAPPING = {"run": "run", "user_id": "id", "fail": "fail"}


def ensure_rules() -> None:
    """Register the rules (again, after a test unregistered every rule)."""
    if get_rule("rq_test.profile_rule") is None:
        # Follows the settings' raise policy.
        Rule(
            model="rq_test.User",
            field_mapping=MAPPING,
            function=profile,
            dispatcher="rq",
            name="rq_test.profile_rule",
        )
    if get_rule("rq_test.account_rule") is None:
        # Always raises, on the producer and on the worker alike: RQ retries its failures.
        Rule(
            model="rq_test.Account",
            field_mapping=MAPPING,
            function=account,
            dispatcher="rq",
            raise_exception=True,
            name="rq_test.account_rule",
        )


ensure_rules()


@task(name="rq_test.sleepy", dispatcher="rq", timeout=1, on_duplicate="discard")
def sleepy(run: str, seconds: float) -> None:
    _client.rpush(events(run), "started")
    time.sleep(seconds)
    _client.rpush(events(run), "finished")


@task(name="rq_test.whoami", dispatcher="rq", bind=True)
def whoami(ctx: TaskContext, run: str) -> str:
    _client.rpush(events(run), f"{ctx.uuid}|{ctx.worker_id}|{ctx.attempt}")
    return ctx.uuid


@task(name="rq_test.serial", dispatcher="rq", on_duplicate="serial")
def serial(run: str, hold: bool) -> None:
    _client.rpush(events(run), "started")
    if hold:
        # Runs until the test lets it finish, so duplicates arrive while it runs.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # short BLPOPs: redis-py's socket timeout is 5 s
            if _client.blpop([f"cw-test:{run}:release"], timeout=1) is not None:
                break
    _client.rpush(events(run), "finished")


if os.environ.get("CW_RQ_TEST_URL"):
    configure_worker(URL)
