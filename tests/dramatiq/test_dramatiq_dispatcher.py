"""The dramatiq dispatcher's own behaviour on real brokers with an in-process worker: settings,
actor declaration, the raise policy through Dramatiq's Retries, and task options."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq_support import REDIS_URL, RunningWorker, dead_letters, wait_until

from cachewire import Rule, TaskContext, TaskRegistry, changed, configure, task
from cachewire.dispatch import dispatch_stats, resolve_dispatcher
from cachewire.errors import ConfigurationError
from cachewire.tasks import RedisGuard
from cachewire.testing import RecordingFunction, unique_name
from cachewire_dramatiq import RULES_ACTOR_NAME, TASKS_ACTOR_NAME, register_actor


class FlakyFunction(RecordingFunction):
    """Fails the first ``failures`` invalidations, then records them."""

    def __init__(self, failures: int) -> None:
        super().__init__(f"flaky.{uuid.uuid4().hex}", ("key",))
        self.failures = failures
        self.attempts = 0

    def invalidate(self, **kwargs: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError(f"cache down (attempt {self.attempts})")
        super().invalidate(**kwargs)


def rule_for(model: str, config: dict[str, Any], **options: Any) -> RecordingFunction:
    target = RecordingFunction(f"fn.{uuid.uuid4().hex}", ("key",))
    Rule(
        model=model,
        field_mapping={"key": "key"},
        dispatcher="dramatiq",
        dispatcher_config=config,
        function=target,
        **options,
    )
    return target


def processed_on(running: RunningWorker, actor_name: str) -> list[Any]:
    return [m for m, _ in running.pending.processed if m.actor_name == actor_name]


@pytest.fixture
def running(running_worker: RunningWorker) -> RunningWorker:
    dramatiq.set_broker(running_worker.broker)
    running_worker.pending.processed.clear()
    return running_worker


@pytest.fixture
def model() -> str:
    return f"app.Item{uuid.uuid4().hex}"


class TestSettings:
    async def test_queue_and_actor_name_from_the_rule(
        self, running: RunningWorker, model: str
    ) -> None:
        queue = unique_name("cw")
        target = rule_for(model, {"queue": queue, "actor_name": "myapp.bust"})
        changed(model, {"key": 1})
        await running.wait_idle()
        assert target.calls == [{"key": 1}]
        (message,) = processed_on(running, "myapp.bust")
        assert message.queue_name == queue

    async def test_two_rules_with_different_actor_names_both_work(
        self, running: RunningWorker, model: str
    ) -> None:
        queue = unique_name("cw")
        first = rule_for(model, {"queue": queue, "actor_name": "myapp.bust_one"})
        second = rule_for(model, {"queue": queue, "actor_name": "myapp.bust_two"})
        changed(model, {"key": 7})
        await running.wait_idle()
        assert first.calls == [{"key": 7}]
        assert second.calls == [{"key": 7}]
        assert len(processed_on(running, "myapp.bust_one")) == 1
        assert len(processed_on(running, "myapp.bust_two")) == 1

    async def test_settings_block_gives_queue_and_actor_name(
        self, running: RunningWorker, model: str
    ) -> None:
        queue = unique_name("cw")
        configure(
            dispatcher_settings={"dramatiq": {"QUEUE": queue, "ACTOR_NAME": "myapp.from_settings"}}
        )
        target = rule_for(model, {})
        changed(model, {"key": 2})
        await running.wait_idle()
        assert target.calls == [{"key": 2}]
        (message,) = processed_on(running, "myapp.from_settings")
        assert message.queue_name == queue

    async def test_rule_config_wins_over_the_settings_block(
        self, running: RunningWorker, model: str
    ) -> None:
        configure(dispatcher_settings={"dramatiq": {"QUEUE": unique_name("cw")}})
        queue = unique_name("cw")
        rule_for(model, {"queue": queue})
        changed(model, {"key": 3})
        await running.wait_idle()
        (message,) = processed_on(running, RULES_ACTOR_NAME)
        assert message.queue_name == queue

    def test_unknown_option_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="quue"):
            resolve_dispatcher("dramatiq", {"quue": "x"})

    def test_invalid_queue_name_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="queue"):
            resolve_dispatcher("dramatiq", {"queue": "not a queue!"})


class TestActorDeclaration:
    def test_producer_declares_the_actor_on_first_dispatch(self, model: str) -> None:
        broker = StubBroker()
        dramatiq.set_broker(broker)
        rule_for(model, {"actor_name": "lazy.bust"})
        assert "lazy.bust" not in broker.get_declared_actors()
        changed(model, {"key": 1})
        assert "lazy.bust" in broker.get_declared_actors()
        assert "default" in broker.get_declared_queues()

    def test_register_actor_declares_from_the_settings(self) -> None:
        broker = StubBroker()
        configure(dispatcher_settings={"dramatiq": {"QUEUE": "cache-inv", "ACTOR_NAME": "w.bust"}})
        actor = register_actor(broker=broker)
        assert actor.actor_name == "w.bust"
        assert actor.queue_name == "cache-inv"
        assert {"w.bust", TASKS_ACTOR_NAME} <= broker.get_declared_actors()
        assert register_actor(broker=broker) is actor  # idempotent

    def test_importing_the_actors_module_declares_them(self, tmp_path: Any) -> None:
        import subprocess
        import sys

        script = (
            "import dramatiq\n"
            "from dramatiq.brokers.stub import StubBroker\n"
            "broker = StubBroker(); dramatiq.set_broker(broker)\n"
            "import cachewire\n"
            "cachewire.configure(dispatcher_settings={'dramatiq': {'ACTOR_NAME': 'mod.bust'}})\n"
            "import cachewire_dramatiq.actors\n"
            "print(sorted(broker.get_declared_actors()))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == str(sorted(["mod.bust", TASKS_ACTOR_NAME]))


class TestRaisePolicy:
    async def test_raise_policy_retries_with_the_bounds_then_dead_letters(
        self, running: RunningWorker, model: str
    ) -> None:
        queue = unique_name("cw")
        target = FlakyFunction(failures=100)
        Rule(
            model=model,
            field_mapping={"key": "key"},
            dispatcher="dramatiq",
            dispatcher_config={
                "queue": queue,
                "max_retries": 2,
                "min_backoff": 10,
                "max_backoff": 40,
            },
            function=target,
            raise_exception=True,
        )
        changed(model, {"key": 1})
        await running.wait_idle()
        assert target.attempts == 3  # the first run and two retries
        assert dispatch_stats.snapshot()["rule_errors_raised"] == 3
        (message,) = {m.message_id: m for m in processed_on(running, RULES_ACTOR_NAME)}.values()
        assert message.options["max_backoff"] == 40
        wait_until(lambda: dead_letters(running, queue) == 1, what="the dead letter")

    async def test_a_retried_rule_completes(self, running: RunningWorker, model: str) -> None:
        queue = unique_name("cw")
        configure(
            dispatcher_settings={
                "dramatiq": {"RAISE_EXCEPTION": True, "MIN_BACKOFF": 10, "MAX_BACKOFF": 20}
            }
        )
        target = FlakyFunction(failures=2)
        Rule(
            model=model,
            field_mapping={"key": "key"},
            dispatcher="dramatiq",
            dispatcher_config={"queue": queue},
            function=target,
        )
        changed(model, {"key": 5})
        await running.wait_idle()
        assert target.calls == [{"key": 5}]
        assert dispatch_stats.snapshot()["rule_errors_raised"] == 2
        assert dead_letters(running, queue) == 0

    async def test_without_the_raise_policy_errors_are_logged_counted_and_acked(
        self, running: RunningWorker, model: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        queue = unique_name("cw")
        configure(
            dispatcher_raise_exception=True,
            dispatcher_settings={"dramatiq": {"RAISE_EXCEPTION": False}},
        )
        target = FlakyFunction(failures=100)
        Rule(
            model=model,
            field_mapping={"key": "key"},
            dispatcher="dramatiq",
            dispatcher_config={"queue": queue, "min_backoff": 10},
            function=target,
            name=f"rule.{model}",
        )
        changed(model, {"key": 1})
        await running.wait_idle()
        assert target.attempts == 1
        assert dispatch_stats.snapshot()["rule_errors"] == 1
        assert dispatch_stats.snapshot()["rule_errors_raised"] == 0
        assert f"rule.{model}" in caplog.text
        assert dead_letters(running, queue) == 0

    async def test_a_malformed_body_is_dead_lettered_without_retries(
        self, running: RunningWorker
    ) -> None:
        queue = unique_name("cw")
        actor = register_actor(queue=queue, broker=running.broker)
        running.broker.enqueue(
            dramatiq.Message(
                queue_name=queue,
                actor_name=actor.actor_name,
                args=('{"v": 99}',),
                kwargs={},
                options={"max_retries": 5, "min_backoff": 10},
            )
        )
        await running.wait_idle()
        ((_, error),) = [(m, e) for m, e in running.pending.processed if m.queue_name == queue]
        assert type(error).__name__ == "PayloadError"
        assert dispatch_stats.snapshot()["rejected_messages"] == 1
        wait_until(lambda: dead_letters(running, queue) == 1, what="the dead letter")


class TestTasks:
    @pytest.fixture
    def registry(self) -> TaskRegistry:
        return TaskRegistry(f"dramatiq-{uuid.uuid4().hex}")

    async def test_queue_bind_and_timeout_map_onto_the_message(
        self, running: RunningWorker, registry: TaskRegistry
    ) -> None:
        queue = unique_name("cw")
        seen: list[TaskContext] = []

        @task(
            name="t.bind",
            registry=registry,
            dispatcher="dramatiq",
            queue=queue,
            bind=True,
            timeout=2.5,
        )
        def work(ctx: TaskContext, x: int) -> int:
            seen.append(ctx)
            return x * 2

        submitted = work.delay(21)
        await running.wait_idle()
        (ctx,) = seen
        (message,) = processed_on(running, TASKS_ACTOR_NAME)
        assert message.queue_name == queue
        assert ctx.uuid == submitted.uuid == message.message_id
        assert ctx.queue == queue
        assert message.options["time_limit"] == 2500
        assert message.options["max_retries"] == 0

    async def test_apply_async_options_win(
        self, running: RunningWorker, registry: TaskRegistry
    ) -> None:
        default_queue, call_queue = unique_name("cw"), unique_name("cw")

        @task(
            name="t.opts", registry=registry, dispatcher="dramatiq", queue=default_queue, timeout=1
        )
        def work() -> None:
            pass

        work.apply_async(queue=call_queue, timeout=0)
        await running.wait_idle()
        (message,) = processed_on(running, TASKS_ACTOR_NAME)
        assert message.queue_name == call_queue
        assert "time_limit" not in message.options
        assert running.broker.get_actor(TASKS_ACTOR_NAME).options["time_limit"] == float("inf")

    async def test_on_duplicate_with_the_shared_guard(
        self, running: RunningWorker, registry: TaskRegistry, run_namespace: str
    ) -> None:
        guard = RedisGuard(REDIS_URL, prefix=f"{unique_name(run_namespace)}:")
        started, release = threading.Event(), threading.Event()
        runs: list[int] = []

        @task(
            name="t.dup",
            registry=registry,
            dispatcher="dramatiq",
            on_duplicate="queue_one",
            guard=guard,
        )
        def work(x: int) -> None:
            runs.append(x)
            started.set()
            release.wait(10)

        assert work.delay(1).outcome == "accepted"
        await asyncio.to_thread(started.wait, 10)
        outcomes = [work.delay(1).outcome for _ in range(3)]
        release.set()
        await running.wait_idle()
        assert outcomes == ["queued", "discarded", "discarded"]
        assert runs == [1, 1]
