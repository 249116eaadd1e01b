"""A real ``celery worker`` process: broker outages, time limits, request context, the shared
duplicate guard and tasks that only the worker knows."""

from __future__ import annotations

import os
from typing import Any

import pytest
from celery.result import AsyncResult
from celery_shared import (
    RedisRecorder,
    declare_rule,
    exclusive,
    model_for,
    serial_step,
    sleepy,
    whoami,
)

from cachewire import Rule, changed, collect, configure
from cachewire.dispatch import dispatch_stats
from cachewire.errors import DispatchError, TaskTimeoutError
from cachewire.testing import RecordingFunction
from cachewire_celery import CeleryDispatcher


@pytest.fixture(params=["redis", "amqp"])
def worker(request: pytest.FixtureRequest, worker_processes: Any) -> Any:
    return worker_processes.get(request.param)


@pytest.fixture
def app(worker: Any, producer_for: Any) -> Any:
    return producer_for(worker)


def _sentinel(worker: Any, model: str) -> None:
    """Send one more change and wait for it: everything sent before it has been handled."""
    changed(model, {"key": "sentinel"})
    assert worker.pop("invalidated") == {"key": "sentinel"}


@pytest.mark.timeout(90)
def test_broker_outage_with_the_raise_policy(worker: Any, app: Any) -> None:
    declare_rule(RedisRecorder(worker.record_url, worker.record_key), "raise")
    model = model_for("raise")
    changed(model, {"key": "warm-up"})
    assert worker.pop("invalidated") == {"key": "warm-up"}

    worker.proxy.cut()
    sent = ["single-0", "single-1"]
    for key in sent:
        changed(model, {"key": key})  # never raises into the change
    with collect():
        for i in range(10):
            changed(model, {"key": f"batch-{i}"})
    sent += [f"batch-{i}" for i in range(10)]
    assert len(CeleryDispatcher.redelivery()) == 3  # two single publishes and one batch
    assert worker.records("invalidated") == []

    worker.proxy.restore()
    assert CeleryDispatcher.flush_redelivery(timeout=60)
    got = [worker.pop("invalidated", timeout=60)["key"] for _ in sent]
    assert sorted(got) == sorted(sent)
    _sentinel(worker, model)
    assert worker.records("invalidated") == []  # nothing was done twice


@pytest.mark.timeout(90)
def test_broker_outage_with_the_log_policy(worker: Any, app: Any) -> None:
    declare_rule(RedisRecorder(worker.record_url, worker.record_key), "log")
    model = model_for("log")
    changed(model, {"key": "warm-up"})
    assert worker.pop("invalidated") == {"key": "warm-up"}

    worker.proxy.cut()
    changed(model, {"key": "lost"})  # logged and counted, not raised
    assert dispatch_stats.snapshot()["dispatch_errors"] == 1
    assert len(CeleryDispatcher.redelivery()) == 0

    worker.proxy.restore()
    _sentinel(worker, model)
    assert worker.records("invalidated") == []


def test_soft_time_limit_is_reported_as_the_timeout_error(worker: Any, app: Any) -> None:
    submitted = sleepy.apply_async((10,), timeout=0.5)
    result = AsyncResult(submitted.uuid, app=app)
    error = result.get(timeout=30, propagate=False)
    assert isinstance(error, TaskTimeoutError), error
    assert result.state == "FAILURE"
    quick = sleepy.apply_async((0,), timeout=5)
    assert AsyncResult(quick.uuid, app=app).get(timeout=30) == "woke"


def test_bind_context_comes_from_the_worker(worker: Any, app: Any) -> None:
    submitted = whoami.delay()
    seen = AsyncResult(submitted.uuid, app=app).get(timeout=30)
    assert seen["uuid"] == submitted.uuid
    assert seen["attempt"] == 1
    node, pid = seen["worker_id"].rsplit(":", 1)
    assert node.startswith("celery@")  # the Celery node that ran it
    assert int(pid) != os.getpid()  # and its process, not the submitter's


def test_duplicates_are_discarded_across_processes(worker: Any, app: Any) -> None:
    configure(task_guard=worker.record_url)
    gate = f"{worker.record_key}:gate"
    first = exclusive.delay(gate)
    assert first.outcome == "accepted"
    worker.pop("exclusive-started")
    assert exclusive.delay(gate).outcome == "discarded"
    worker.redis.rpush(gate, "go")
    assert AsyncResult(first.uuid, app=app).get(timeout=30) == "done"
    # The worker released the guard when the run ended.
    again = exclusive.delay(gate)
    assert again.outcome == "accepted"
    worker.redis.rpush(gate, "go")
    assert AsyncResult(again.uuid, app=app).get(timeout=30) == "done"


def test_a_held_duplicate_is_sent_by_the_worker_when_its_turn_comes(worker: Any, app: Any) -> None:
    configure(task_guard=worker.record_url)
    gate = f"{worker.record_key}:serial-gate"
    assert serial_step.delay(gate).outcome == "accepted"
    worker.pop("serial-started")
    assert serial_step.delay(gate).outcome == "queued"  # held in the shared guard
    worker.redis.rpush(gate, "first", "second")
    # The worker that finished the first run sent the held one through the celery dispatcher.
    assert worker.pop("serial-started") == {"gate": gate}
    assert worker.records("serial-started") == []


def test_a_task_only_the_worker_knows_goes_through_send_task(worker: Any, app: Any) -> None:
    declare_rule(
        RedisRecorder(worker.record_url, worker.record_key),
        "remote",
        dispatcher_config={"task_name": "celery-tests.remote_run_work"},
    )
    model = model_for("remote")
    assert "celery-tests.remote_run_work" not in app.tasks
    changed(model, {"key": "remote"})
    worker.pop("remote")
    assert worker.pop("invalidated") == {"key": "remote"}


def test_fallback_inline_runs_the_work_here_while_the_broker_is_down(worker: Any, app: Any) -> None:
    target = RecordingFunction("celery-tests.inline-fallback", ("key",))
    model = model_for("inline-fallback")
    Rule(
        model=model,
        field_mapping={"key": "key"},
        dispatcher="celery",
        dispatcher_config={"fallback": "inline"},
        raise_exception=True,
        function=target,
    )
    worker.proxy.cut()
    try:
        changed(model, {"key": 1})  # never raises into the change
    finally:
        worker.proxy.restore()
    assert target.calls == [{"key": 1}]
    assert dispatch_stats.snapshot()["fallbacks"] == 1
    assert len(CeleryDispatcher.redelivery()) == 0


def test_a_task_submitted_while_the_broker_is_down_raises_to_its_caller(
    worker: Any, app: Any
) -> None:
    worker.proxy.cut()
    try:
        with pytest.raises(DispatchError, match="broker"):
            sleepy.delay(0)
    finally:
        worker.proxy.restore()
    submitted = sleepy.delay(0)  # and the next one goes through
    assert AsyncResult(submitted.uuid, app=app).get(timeout=30) == "woke"
