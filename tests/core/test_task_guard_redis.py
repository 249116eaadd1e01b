"""The Redis duplicate guard: cluster-wide policies, checked across real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cachewire._settings import configure, reset_settings
from cachewire.errors import CacheBackendError
from cachewire.tasks import RedisGuard, TaskMessage
from cachewire.tasks._guard import resolve_guard

pytestmark = pytest.mark.timeout(60)

# One process: submits `work(1)` once with the policy under test through a Redis guard. Runs go
# to threads of the submitting process (or of the process that releases a held message). The
# body records itself in Redis and waits for the test to push "go".
PROCESS = r"""
import sys, threading
import redis
from cachewire.dispatch import Dispatcher
from cachewire.tasks import run_task, task

url, policy, prefix = sys.argv[1:4]
r = redis.Redis.from_url(url, socket_timeout=60)


class Threads(Dispatcher):
    name = "test-guard-threads"

    def __init__(self, **config):
        super().__init__(**config)
        self.pending = 0
        self.cond = threading.Condition()

    def dispatch(self, **kwargs):
        raise NotImplementedError

    def submit_task(self, message):
        with self.cond:
            self.pending += 1
        threading.Thread(target=self.run, args=(message,)).start()

    def run(self, message):
        try:
            run_task(message)
        finally:
            with self.cond:
                self.pending -= 1
                self.cond.notify_all()


threads = Threads()


@task(name="xproc", dispatcher=threads, guard=url, on_duplicate=policy)
def work(x):
    r.rpush(prefix + "active", r.incr(prefix + "now"))
    r.incr(prefix + "runs")
    r.rpush(prefix + "started", "1")
    if r.blpop([prefix + "go"], timeout=30) is None:
        r.incr(prefix + "gate-timeouts")
    r.rpush(prefix + "go", "1")
    r.decr(prefix + "now")


r.rpush(prefix + "outcomes", work.delay(1).outcome)
with threads.cond:
    assert threads.cond.wait_for(lambda: threads.pending == 0, timeout=45)
# A message held in the shared guard may be released by another process: nothing about it may
# stay behind in this one.
from cachewire.tasks._task import _held_dispatchers
assert not _held_dispatchers, _held_dispatchers
"""

EXPECTED = {
    "discard": (1, ["accepted"] + ["discarded"] * 4),
    "serial": (5, ["accepted"] + ["queued"] * 4),
    "queue_one": (2, ["accepted", "queued"] + ["discarded"] * 3),
}


@pytest.fixture
def client(redis_db_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_db_url, socket_timeout=60)  # BLPOP waits past the 5 s default
    yield c
    c.close()


def _spawn(url: str, policy: str, prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", PROCESS, url, policy, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(process: subprocess.Popen[bytes]) -> None:
    output, _ = process.communicate(timeout=45)
    assert process.returncode == 0, output.decode()


@pytest.mark.parametrize("policy", sorted(EXPECTED))
def test_policies_hold_across_processes(
    policy: str, redis_db_url: str, client: redis.Redis
) -> None:
    prefix = f"test:{policy}:"
    runner = _spawn(redis_db_url, policy, prefix)
    processes = [runner]
    try:
        assert client.blpop([prefix + "started"], timeout=30) is not None, "first run never began"
        processes += [_spawn(redis_db_url, policy, prefix) for _ in range(4)]
        outcomes: list[str] = []
        for _ in range(5):
            item = client.blpop([prefix + "outcomes"], timeout=30)
            assert item is not None, f"only {outcomes} submitted"
            outcomes.append(item[1].decode() if isinstance(item[1], bytes) else item[1])
        client.rpush(prefix + "go", "1")
        for process in processes:
            _finish(process)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    runs, expected_outcomes = EXPECTED[policy]
    assert sorted(outcomes) == sorted(expected_outcomes)
    assert int(client.get(prefix + "runs") or 0) == runs
    assert client.get(prefix + "gate-timeouts") is None
    # One run at a time, cluster-wide.
    assert {int(v) for v in client.lrange(prefix + "active", 0, -1)} == {1}


def test_running_marker_is_a_lease_and_finish_hands_over(redis_db_url: str, client: Any) -> None:
    guard = RedisGuard(redis_db_url, prefix="lease:", lease_seconds=30)
    key = TaskMessage(name="lease").duplicate_key
    assert guard.admit(key, "serial", "m1") == "accepted"
    ttl = client.pttl(f"lease:{key}:run")
    assert 0 < ttl <= 30_000
    assert guard.admit(key, "serial", "m2") == "queued"
    assert client.pttl(f"lease:{key}:held") > 0
    assert guard.finish(key) == "m2"
    assert client.pttl(f"lease:{key}:run") > 0
    assert guard.finish(key) is None
    assert client.exists(f"lease:{key}:run") == 0
    assert guard.admit(key, "discard", "m3") == "accepted"


def test_settings_select_the_redis_guard(redis_db_url: str) -> None:
    try:
        configure(task_guard=redis_db_url)
        from cachewire._settings import get_settings

        guard = resolve_guard(get_settings().task_guard)
        assert isinstance(guard, RedisGuard)
        assert guard.url == redis_db_url
    finally:
        reset_settings()


def test_unreachable_redis_is_a_cache_backend_error(private_redis: Any) -> None:
    guard = RedisGuard(private_redis.url)
    key = TaskMessage(name="down").duplicate_key
    assert guard.admit(key, "discard", "m") == "accepted"
    private_redis.stop()
    with pytest.raises(CacheBackendError, match="task guard"):
        guard.admit(key, "discard", "m")


def test_touch_renews_the_lease(redis_db_url: str, client: Any) -> None:
    guard = RedisGuard(redis_db_url, prefix="touch:", lease_seconds=60)
    key = TaskMessage(name="touch").duplicate_key
    assert guard.admit(key, "discard", "m") == "accepted"
    client.pexpire(f"touch:{key}:run", 1_000)
    guard.touch(key)
    assert client.pttl(f"touch:{key}:run") > 1_000


def test_keep_alive_renews_while_the_run_goes_on(
    redis_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = RedisGuard(redis_db_url, prefix="alive:", lease_seconds=0.3)
    renewed = threading.Event()
    real_touch = guard.touch

    def touch(key: str) -> None:
        real_touch(key)
        renewed.set()

    monkeypatch.setattr(guard, "touch", touch)
    key = TaskMessage(name="alive").duplicate_key
    with guard.keep_alive(key):
        assert renewed.wait(10)
