"""The celery dispatcher and worker task on the embedded worker: eager mode, retries, options."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.signals import before_task_publish, task_failure, task_postrun

import cachewire
from cachewire import Rule, changed
from cachewire.dispatch import dispatch_stats
from cachewire.errors import ConfigurationError, DispatchError
from cachewire.testing import RecordingFunction
from cachewire_celery import RETRIES_LABEL, TASK_NAME, CeleryDispatcher


def _rule(**options: Any) -> tuple[str, RecordingFunction]:
    model = f"celery-tests.{uuid.uuid4().hex}"
    target = RecordingFunction(f"celery-tests.{uuid.uuid4().hex}", ("key",))
    options.setdefault("dispatcher", "celery")
    Rule(model=model, field_mapping={"key": "key"}, function=target, **options)
    return model, target


class FlakyFunction(RecordingFunction):
    """Fails its first ``failures`` invalidations, then records."""

    def __init__(self, failures: int) -> None:
        super().__init__(f"celery-tests.{uuid.uuid4().hex}", ("key",))
        self.failures = failures
        self.attempts = 0
        self.done = threading.Event()

    def invalidate(self, **kwargs: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"cache down (attempt {self.attempts})")
        super().invalidate(**kwargs)


@pytest.fixture
def eager_app() -> Iterator[Celery]:
    app = Celery("celery-tests-eager", broker="memory://", set_as_current=False)
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    previous = cachewire_current()
    app.set_current()
    yield app
    previous.set_current()


def cachewire_current() -> Celery:
    from celery import current_app

    return current_app._get_current_object()  # type: ignore[no-any-return]


def test_task_always_eager_runs_the_work_in_the_call(eager_app: Celery) -> None:
    assert TASK_NAME in eager_app.tasks
    model, target = _rule()
    changed(model, {"key": 1})
    assert target.calls == [{"key": 1}]  # no worker: apply_async ran it in the call


def test_eager_errors_follow_the_raise_policy(eager_app: Celery) -> None:
    eager_app.tasks[TASK_NAME].max_retries = 0
    model, target = _rule(raise_exception=True)
    target.fail_with = ValueError("boom")
    with pytest.raises(DispatchError):
        changed(model, {"key": 1})
    model, target = _rule(raise_exception=False)
    target.fail_with = ValueError("boom")
    changed(model, {"key": 1})
    assert dispatch_stats.snapshot()["rule_errors"] == 2


def test_a_failing_rule_is_retried_until_it_succeeds(redis_rig: Any) -> None:
    redis_rig.make_current()
    task = redis_rig.app.tasks[TASK_NAME]
    task.max_retries, task.retry_backoff = 3, 0.01
    try:
        target = FlakyFunction(failures=2)
        model = f"celery-tests.{uuid.uuid4().hex}"
        Rule(
            model=model,
            field_mapping={"key": "key"},
            dispatcher="celery",
            function=target,
            raise_exception=True,
        )
        changed(model, {"key": 7})
        redis_rig.inflight.wait_idle()
        assert target.calls == [{"key": 7}]
        assert target.attempts == 3
        assert dispatch_stats.snapshot()["rule_errors_raised"] == 2
    finally:
        task.max_retries, task.retry_backoff = 0, 1.0


def test_retries_end_in_celerys_failure_handling(redis_rig: Any) -> None:
    redis_rig.make_current()
    task = redis_rig.app.tasks[TASK_NAME]
    task.max_retries, task.retry_backoff = 2, 0.01
    failures: list[BaseException] = []

    def on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        if getattr(sender, "name", None) == TASK_NAME and exception is not None:
            failures.append(exception)

    task_failure.connect(on_failure, weak=False)
    try:
        target = FlakyFunction(failures=100)
        model = f"celery-tests.{uuid.uuid4().hex}"
        Rule(
            model=model,
            field_mapping={"key": "key"},
            dispatcher="celery",
            function=target,
            raise_exception=True,
        )
        changed(model, {"key": 7})
        redis_rig.inflight.wait_idle()
        assert target.attempts == 3  # the first run and two retries
        assert [type(e) for e in failures] == [ConnectionError]
    finally:
        task_failure.disconnect(on_failure)
        task.max_retries, task.retry_backoff = 0, 1.0


def test_a_malformed_body_fails_without_retry(redis_rig: Any) -> None:
    redis_rig.make_current()
    task = redis_rig.app.tasks[TASK_NAME]
    task.max_retries = 3
    runs: list[tuple[str, str]] = []

    def on_postrun(task_id: str = "", state: str = "", **_: Any) -> None:
        runs.append((task_id, state))

    task_postrun.connect(on_postrun, weak=False)
    try:
        result = task.apply_async(args=("not json",))
        redis_rig.inflight.wait_idle()
    finally:
        task_postrun.disconnect(on_postrun)
        task.max_retries = 0
    assert [state for task_id, state in runs if task_id == result.id] == ["FAILURE"]


def test_queue_option_routes_the_message(redis_rig: Any) -> None:
    redis_rig.make_current()
    seen: list[str] = []

    def on_publish(sender: Any = None, routing_key: Any = None, **_: Any) -> None:
        if sender == TASK_NAME:
            seen.append(routing_key)

    before_task_publish.connect(on_publish, weak=False)
    try:
        model, target = _rule(dispatcher_config={"queue": redis_rig.queue})
        changed(model, {"key": 1})
        redis_rig.inflight.wait_idle()
    finally:
        before_task_publish.disconnect(on_publish)
    assert seen == [redis_rig.queue]
    assert target.calls == [{"key": 1}]


def test_dispatcher_is_found_by_name() -> None:
    assert "celery" in cachewire.registered_dispatcher_names()
    assert isinstance(cachewire.get_dispatcher("celery"), CeleryDispatcher)
    with pytest.raises(ConfigurationError):
        Rule(
            model="celery-tests.x",
            field_mapping={"key": "key"},
            dispatcher="celeryy",
            function=RecordingFunction("celery-tests.x", ("key",)),
        )


def test_spent_retries_reach_a_dead_letter_queue(amqp_rig: Any) -> None:
    amqp_rig.make_current()
    task = amqp_rig.app.tasks[TASK_NAME]
    saved = task.max_retries, task.retry_backoff, task.acks_late, task.acks_on_failure
    task.max_retries, task.retry_backoff, task.acks_late, task.acks_on_failure = (
        1,
        0.01,
        True,
        False,
    )
    try:
        with amqp_rig.app.connection_for_write() as conn:
            dead = conn.SimpleQueue(amqp_rig.dead_letters)
            target = FlakyFunction(failures=100)
            model = f"celery-tests.{uuid.uuid4().hex}"
            Rule(
                model=model,
                field_mapping={"key": "key"},
                dispatcher="celery",
                function=target,
                raise_exception=True,
            )
            changed(model, {"key": "dead"})
            amqp_rig.inflight.wait_idle()
            # The embedded worker settles the rejected message on its event loop's next turn;
            # one more message brings that turn now instead of at its 10 s poll timeout.
            amqp_rig.wake()
            message = dead.get(block=True, timeout=20)
            message.ack()
            dead.close()
    finally:
        task.max_retries, task.retry_backoff, task.acks_late, task.acks_on_failure = saved
    assert target.attempts == 2
    (body,), _kwargs, _embed = message.decode()
    assert '"dead"' in body
    assert message.headers["task"] == TASK_NAME


def test_options_are_checked_when_the_rule_is_declared() -> None:
    target = RecordingFunction("celery-tests.options", ("key",))
    with pytest.raises(ConfigurationError, match="queues"):
        Rule(
            model="celery-tests.options",
            field_mapping={"key": "key"},
            dispatcher="celery",
            dispatcher_config={"queues": "typo"},
            function=target,
        )
    with pytest.raises(ConfigurationError, match="task_name"):
        Rule(
            model="celery-tests.options",
            field_mapping={"key": "key"},
            dispatcher="celery",
            dispatcher_config={"task_name": 5},
            function=target,
        )


def test_a_task_with_the_retries_label_is_retried(redis_rig: Any) -> None:
    redis_rig.make_current()
    task = redis_rig.app.tasks[TASK_NAME]
    task.retry_backoff = 0.01
    attempts: list[int] = []

    @cachewire.task(
        name=f"celery-tests.flaky-{uuid.uuid4().hex}",
        dispatcher="celery",
        bind=True,
        labels={RETRIES_LABEL: 2},
    )
    def flaky(ctx: cachewire.TaskContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("not yet")

    @cachewire.task(name=f"celery-tests.failing-{uuid.uuid4().hex}", dispatcher="celery")
    def failing() -> None:
        attempts.append(0)
        raise ConnectionError("never")

    try:
        flaky.delay()
        failing.delay()  # no label: no retry
        redis_rig.inflight.wait_idle()
    finally:
        task.retry_backoff = 1.0
    assert sorted(attempts) == [0, 1, 2, 3]
