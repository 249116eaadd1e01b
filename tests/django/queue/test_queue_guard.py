"""``on_duplicate`` with cluster scope through `DatabaseGuard`, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.utils import timezone
from queue_fixtures import queue_settings  # noqa: F401 - autouse

import cachewire
from cachewire.testing import override_settings
from cachewire_django.queue import QueueWorker
from cachewire_django.queue.guard import DatabaseGuard
from cachewire_django.queue.models import GuardSlot, HeldMessage

ALIASES = [
    pytest.param("default", marks=pytest.mark.django_db(transaction=True)),
    pytest.param(
        "pg",
        marks=[
            pytest.mark.postgres,
            pytest.mark.django_db(transaction=True, databases=["default", "pg"]),
        ],
    ),
]

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest) -> Any:
    with override_settings(dispatcher_settings={"db": {"DATABASE": request.param}}):
        yield request.param


def _task(policy: str, alias: str, runs: list[int]) -> Any:
    registry = cachewire.TaskRegistry(f"guard-{uuid.uuid4().hex}")

    @cachewire.task(
        name="queue.guarded",
        registry=registry,
        dispatcher="db",
        on_duplicate=policy,
        guard=DatabaseGuard(using=alias),
    )
    def guarded(value: int) -> None:
        runs.append(value)

    return guarded


def _drain(alias: str) -> None:
    worker = QueueWorker(using=alias)
    while worker.run_pass()[0]:
        pass


@pytest.mark.parametrize(
    ("policy", "outcomes", "runs"),
    [
        ("discard", ["accepted", "discarded", "discarded"], 1),
        ("serial", ["accepted", "queued", "queued"], 3),
        ("queue_one", ["accepted", "queued", "discarded"], 2),
        ("parallel", ["accepted", "accepted", "accepted"], 3),
    ],
)
def test_queue_guard_policies(alias: str, policy: str, outcomes: list[str], runs: int) -> None:
    done: list[int] = []
    guarded = _task(policy, alias, done)
    assert [guarded.delay(1).outcome for _ in range(3)] == outcomes
    _drain(alias)
    assert done == [1] * runs
    assert GuardSlot.objects.using(alias).count() == 0
    assert HeldMessage.objects.using(alias).count() == 0
    assert guarded.delay(1).outcome == "accepted"  # free again once the runs ended


def test_queue_guard_frees_the_slot_of_a_dead_runner(alias: str) -> None:
    guard = DatabaseGuard(using=alias)
    assert guard.admit("k", "discard", "{}") == "accepted"
    assert guard.admit("k", "discard", "{}") == "discarded"
    GuardSlot.objects.using(alias).filter(key="k").update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert guard.admit("k", "discard", "{}") == "accepted"
    assert guard.finish("k") is None
