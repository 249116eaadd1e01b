"""`CachedTask`: a cached result for the same Celery task and arguments short-circuits the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import shared_task
from celery.signals import task_postrun

import cachewire
from cachewire import InMemoryCacheAdapter
from cachewire.errors import CachedTaskError
from cachewire_celery import CachedTask

body_runs: list[tuple[str, Any]] = []


@shared_task(base=CachedTask, name="celery-tests.cached_square")
def cached_square(x: int) -> int:
    body_runs.append(("square", x))
    return x * x


@shared_task(base=CachedTask, name="celery-tests.cached_failure", cache_errors=True)
def cached_failure(x: int) -> int:
    body_runs.append(("failure", x))
    raise ValueError(f"bad input {x}")


class Runs:
    """What the worker returned for each finished run of the cached tasks, waited on."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self._changed = threading.Condition()

    def on_postrun(self, sender: Any = None, retval: Any = None, **_: Any) -> None:
        if getattr(sender, "name", "").startswith("celery-tests.cached_"):
            with self._changed:
                self.results.append(retval)
                self._changed.notify_all()

    def wait(self, count: int) -> list[Any]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.results) >= count, 20)
            return list(self.results)


@pytest.fixture
def runs(redis_rig: Any) -> Iterator[Runs]:
    redis_rig.make_current()
    cachewire.configure(default_cache=InMemoryCacheAdapter())
    body_runs.clear()
    watcher = Runs()
    task_postrun.connect(watcher.on_postrun, weak=False)
    yield watcher
    task_postrun.disconnect(watcher.on_postrun)


def test_an_identical_call_is_served_from_the_cache(runs: Runs, redis_rig: Any) -> None:
    for expected in (1, 2):
        cached_square.apply_async((3,), queue=redis_rig.queue)
        runs.wait(expected)
    cached_square.apply_async((4,), queue=redis_rig.queue)
    assert runs.wait(3) == [9, 9, 16]
    assert body_runs == [("square", 3), ("square", 4)]


def test_cache_ttl_zero_runs_and_does_not_store(runs: Runs, redis_rig: Any) -> None:
    for count in (1, 2):
        cached_square.apply_async((5,), queue=redis_rig.queue, headers={"cache_ttl": 0})
        runs.wait(count)
    cached_square.apply_async((5,), queue=redis_rig.queue)
    cached_square.apply_async((5,), queue=redis_rig.queue)
    assert runs.wait(4) == [25] * 4
    assert body_runs == [("square", 5)] * 3


def test_cache_errors_serves_the_failure_again(runs: Runs, redis_rig: Any) -> None:
    cached_failure.apply_async((1,), queue=redis_rig.queue)
    cached_failure.apply_async((1,), queue=redis_rig.queue)
    first, second = runs.wait(2)
    assert isinstance(first, ValueError)
    assert isinstance(second, CachedTaskError)
    assert second.error_type == "ValueError"
    assert body_runs == [("failure", 1)]


def test_called_directly_the_task_still_uses_the_cache() -> None:
    cachewire.configure(default_cache=InMemoryCacheAdapter())
    body_runs.clear()
    assert cached_square(6) == 36
    assert cached_square(6) == 36
    assert body_runs == [("square", 6)]
