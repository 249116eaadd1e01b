"""The seam adapters stand on: worker entry, context, declared options, fallback, batches,
retry arithmetic and the public test helpers."""

from __future__ import annotations

import json
import logging
import random
import socket
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

import cachewire
from cachewire import (
    ChangeBatch,
    DispatchContext,
    Dispatcher,
    Option,
    RetryPolicy,
    Rule,
    configure,
    register_dispatcher,
    run_work,
)
from cachewire.dispatch import dispatch_stats, resolve_dispatcher
from cachewire.errors import ConfigurationError, PayloadError, UnsupportedVersionError
from cachewire.tasks import TaskMessage, TaskRegistry, task
from cachewire.testing import LogWatch, TcpProxy, override_settings, reset_state, unique_name
from cachewire.wire import decode_envelope, decode_rule_work, encode_rule_work


@register_dispatcher
class Capturing(Dispatcher):
    """Keeps what it is handed; fails when told to."""

    name = "test-seam-capturing"
    options = {"queue": Option(str, "default", "where messages go"), "depth": Option(int, 1)}
    seen: ClassVar[list[tuple[list[str], DispatchContext, str]]] = []
    broken: ClassVar[bool] = False

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
    ) -> None:
        if type(self).broken:
            raise ConnectionError("broker unreachable")
        self.seen.append(
            (list(rule_ids), context, self.encode_rules(rule_ids, rule_kwargs, context))
        )


class Target:
    cache_id = "seam.target"
    parameters = ("key",)

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def check_invalidation_params(self, names: Any) -> None:
        return None

    def invalidate(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


@pytest.fixture(autouse=True)
def _clean() -> Any:
    Capturing.seen.clear()
    Capturing.broken = False
    reset_state()
    yield
    reset_state()


def test_public_names_are_exported() -> None:
    for name in (
        "run_work",
        "arun_work",
        "DispatchContext",
        "Option",
        "ChangeBatch",
        "RetryPolicy",
    ):
        assert name in cachewire.__all__
        assert getattr(cachewire, name) is not None


def test_a_batch_carries_its_context_to_the_dispatcher_and_the_wire() -> None:
    target = Target()
    Rule(model="seam.Item", field_mapping={"key": "key"}, dispatcher=Capturing, function=target)
    batch = ChangeBatch(origin="shop.Order#7", using="replica")
    assert batch.record("seam.Item", {"key": 1}, old={"key": 2}) == 2
    assert batch.record("seam.Item", {"key": 1}) == 0  # identical work collapses
    batch.flush()
    [(ids, context, body)] = Capturing.seen
    assert context.origin == "shop.Order#7"
    assert context.using == "replica"
    assert context.raise_exception is False
    with pytest.raises(AttributeError):
        context.origin = "x"  # type: ignore[misc]
    work = decode_rule_work(body)
    assert work.context == {"origin": "shop.Order#7", "using": "replica"}
    assert sorted(kw["key"] for kw in work.rule_kwargs[ids[0]]) == [1, 2]


def test_collect_takes_origin_and_using() -> None:
    Rule(model="seam.Item", field_mapping={"key": "key"}, dispatcher=Capturing, function=Target())
    with cachewire.collect(using="other"):
        cachewire.changed("seam.Item", {"key": 3})
    assert Capturing.seen[0][1].using == "other"


def test_run_work_routes_rule_work_and_tasks() -> None:
    target = Target()
    rule = Rule(model="seam.Item", field_mapping={"key": "key"}, function=target)
    run_work(encode_rule_work([rule.id], {rule.id: [{"key": 5}]}), dispatcher_name="inline")
    assert target.calls == [{"key": 5}]

    registry = TaskRegistry(unique_name("seam"))
    seen: list[Any] = []

    @task(name="seam.bound", registry=registry, bind=True)
    def bound(ctx: Any, x: int) -> int:
        seen.append((ctx.worker_id, ctx.attempt))
        return x * 2

    message = TaskMessage(name="seam.bound", args=(21,), bind=True, registry=registry.key)
    assert run_work(message.to_json(), dispatcher_name="x", worker_id="w1", attempt=3) == 42
    assert seen == [("w1", 3)]


def test_run_work_reraises_task_errors_for_the_runtime() -> None:
    registry = TaskRegistry(unique_name("seam"))

    @task(name="seam.fails", registry=registry)
    def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        run_work(
            TaskMessage(name="seam.fails", registry=registry.key).to_json(), dispatcher_name="x"
        )


def test_newer_major_is_refused_and_newer_minor_read() -> None:
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        decode_envelope('{"kind": "task", "v": [2, 0], "body": {}}')
    body = {"name": "t", "a_later_field": 1}
    message = TaskMessage.from_json(json.dumps({"kind": "task", "v": [1, 7], "body": body}))
    assert message.name == "t"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        "null",
        '{"kind": "task", "v": [1, 0], "body": {"name": ["x"]}}',
        '{"kind": "rules", "v": [1, 0], "body": {"rule_ids": "abc", "rule_kwargs": {}}}',
        '{"kind": "elsewhere", "v": [1, 0], "body": {}}',
        '{"kind": "rules", "v": "1.0", "body": {}}',
        "[" * 100_000,
    ],
)
def test_rejected_messages_are_counted(body: Any) -> None:
    with pytest.raises(PayloadError):
        run_work(body, dispatcher_name="inline")
    assert dispatch_stats.snapshot()["rejected_messages"] == 1


def test_options_are_checked_where_they_are_declared() -> None:
    with pytest.raises(ConfigurationError, match="no option 'qeueu'"):
        Rule(model="m", dispatcher=Capturing, dispatcher_config={"qeueu": "x"}, function=Target())
    with pytest.raises(ConfigurationError, match="must be int"):
        resolve_dispatcher(Capturing, {"depth": "deep"})
    instance = resolve_dispatcher(Capturing, {"queue": "fast"})
    assert instance.option("queue") == "fast"
    assert resolve_dispatcher(Capturing).option("depth") == 1
    with override_settings(dispatcher_settings={Capturing.name: {"DEPTH": 4}}):
        assert resolve_dispatcher(Capturing).option("depth") == 4


def test_configure_refuses_unknown_names_and_keys() -> None:
    with pytest.raises(ConfigurationError, match="unknown dispatcher 'celry'"):
        configure(default_dispatcher="celry")
    with pytest.raises(ConfigurationError, match="unknown dispatcher 'nope'"):
        configure(dispatcher_settings={"nope": {}})
    with pytest.raises(ConfigurationError, match="no option 'MAX_WORKER'"):
        configure(dispatcher_settings={"threadpool": {"MAX_WORKER": 3}})
    with pytest.raises(ConfigurationError, match="must be int"):
        configure(dispatcher_settings={"threadpool": {"MAX_WORKERS": "8"}})
    assert cachewire.get_settings().default_dispatcher == "inline"  # nothing was applied


def test_a_failing_transport_falls_back_inline_when_configured() -> None:
    target = Target()
    Rule(
        model="seam.Item",
        field_mapping={"key": "key"},
        dispatcher=Capturing,
        dispatcher_config={"fallback": "inline"},
        function=target,
    )
    Capturing.broken = True
    cachewire.changed("seam.Item", {"key": 9})  # never raises into the change
    assert target.calls == [{"key": 9}]
    stats = dispatch_stats.snapshot()
    assert stats["dispatch_errors"] == 1
    assert stats["fallbacks"] == 1


def test_a_failing_transport_only_logs_by_default(caplog: pytest.LogCaptureFixture) -> None:
    target = Target()
    Rule(model="seam.Item", field_mapping={"key": "key"}, dispatcher=Capturing, function=target)
    Capturing.broken = True
    cachewire.changed("seam.Item", {"key": 9})
    assert target.calls == []
    assert dispatch_stats.snapshot()["dispatch_errors"] == 1
    assert "broker unreachable" in caplog.text


def test_one_resolver_for_rules_and_tasks() -> None:
    class Unregistered(Capturing):
        name = "test-seam-unregistered"

    with pytest.raises(ConfigurationError, match="unknown dispatcher"):
        Rule(model="m", dispatcher="test-seam-unregistered", function=Target())
    with pytest.raises(ConfigurationError, match="unknown dispatcher"):
        task(name="seam.t", dispatcher="test-seam-unregistered", registry=TaskRegistry("x1"))(
            lambda: None
        )
    # A class or an instance is accepted as it is, by both.
    assert isinstance(resolve_dispatcher(Unregistered), Unregistered)


def test_retry_policy_backs_off_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=2, factor=3, max_delay=10, jitter=False)
    assert [policy.delay_for(n) for n in (1, 2, 3, 4)] == [2, 6, 10, 10]
    assert policy.delays() == [2, 6, 10]
    assert [policy.should_retry(n) for n in (1, 3, 4)] == [True, True, False]
    jittered = RetryPolicy(base_delay=4, jitter=True)
    rng = random.Random(1)
    draws = [jittered.delay_for(1, rng=rng) for _ in range(200)]
    assert all(2 <= d <= 4 for d in draws)
    assert len(set(draws)) > 100
    assert RetryPolicy(max_delay=5).delay_for(10_000) <= 5
    for bad in (
        {"max_attempts": 0},
        {"base_delay": -1},
        {"factor": 0},
        {"max_delay": float("nan")},
    ):
        with pytest.raises(ConfigurationError):
            RetryPolicy(**bad)


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, server.getsockname()[1]


def test_tcp_proxy_forwards_cuts_and_restores() -> None:
    import threading

    server, port = _echo_server()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(
                target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(1024), b"")],
                daemon=True,
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    with TcpProxy("127.0.0.1", port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), 5) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
            proxy.cut()
            client.settimeout(5)
            assert client.recv(4) == b""  # the open connection was dropped
        with socket.create_connection(("127.0.0.1", proxy.port), 5) as refused:
            refused.settimeout(5)
            assert refused.recv(4) == b""  # accepted, then closed at once
        proxy.restore()
        with socket.create_connection(("127.0.0.1", proxy.port), 5) as client:
            client.sendall(b"pong")
            assert client.recv(4) == b"pong"
        assert (
            proxy.url_through("redis://u:p@127.0.0.1:6379/3")
            == f"redis://u:p@127.0.0.1:{proxy.port}/3"
        )
    server.close()


def test_log_watch_is_set_by_its_message_only_while_attached() -> None:
    logger = logging.getLogger("cachewire.seamtest.child")
    before = logging.getLogger("cachewire.seamtest").level
    with LogWatch("cachewire.seamtest", "will retry") as watch:
        logger.debug("something else")
        assert not watch.seen.is_set()
        logger.debug("the broker is down; will retry in 1 s")
        assert watch.seen.is_set()
        assert watch.messages == ["the broker is down; will retry in 1 s"]
    assert watch not in logging.getLogger("cachewire.seamtest").handlers
    assert logging.getLogger("cachewire.seamtest").level == before
    logger.warning("will retry again")
    assert watch.messages == ["the broker is down; will retry in 1 s"]


def test_retry_policy_call_retries_then_raises_the_last_error() -> None:
    waits: list[float] = []
    seen: list[int] = []
    outcomes = iter([ConnectionError("1"), ConnectionError("2"), "ok"])

    def flaky() -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(max_attempts=3, base_delay=0.5, jitter=False)
    result = policy.call(
        flaky,
        retry_on=(ConnectionError,),
        sleep=waits.append,
        on_retry=lambda n, exc, d: seen.append(n),
    )
    assert result == "ok"
    assert waits == [0.5, 1.0]
    assert seen == [1, 2]
    with pytest.raises(ConnectionError, match="always"):
        policy.call(
            lambda: (_ for _ in ()).throw(ConnectionError("always")),
            retry_on=(ConnectionError,),
            sleep=waits.append,
        )
    with pytest.raises(KeyError):  # not retried
        policy.call(lambda: {}["x"], retry_on=(ConnectionError,), sleep=waits.append)


class RuntimeTimeLimit(BaseException):
    """Like a runtime's own time-limit exception (some derive from BaseException)."""


def test_a_runtime_time_limit_is_reported_as_the_task_timeout() -> None:
    from cachewire.errors import TaskTimeoutError
    from cachewire.tasks import reset_task_stats, task_stats

    reset_task_stats()
    registry = TaskRegistry(unique_name("seam"))

    @task(name="seam.limited", registry=registry)
    def limited() -> None:
        raise RuntimeTimeLimit("hard limit")

    body = TaskMessage(name="seam.limited", registry=registry.key).to_json()
    with pytest.raises(TaskTimeoutError, match="RuntimeTimeLimit") as caught:
        run_work(body, dispatcher_name="x", timeout_errors=(RuntimeTimeLimit,))
    assert isinstance(caught.value.__cause__, RuntimeTimeLimit)
    assert task_stats().get("timed_out") == 1


def test_the_producers_raise_policy_travels_to_the_worker() -> None:
    class Failing(Target):
        def invalidate(self, **kwargs: Any) -> None:
            raise ValueError("backend down")

    rule = Rule(model="seam.Item", field_mapping={"key": "key"}, function=Failing())
    quiet = encode_rule_work([rule.id], {rule.id: [{"key": 1}]}, {})
    run_work(quiet, dispatcher_name="elsewhere")  # the worker's own policy: log and count
    loud = encode_rule_work(
        [rule.id], {rule.id: [{"key": 1}]}, DispatchContext(raise_exception=True).for_wire()
    )
    with pytest.raises(ValueError, match="backend down"):
        run_work(loud, dispatcher_name="elsewhere")
    assert dispatch_stats.snapshot()["rule_errors"] == 2


def test_a_rules_dispatcher_config_can_set_the_raise_policy() -> None:
    Rule(
        model="seam.Item",
        field_mapping={"key": "key"},
        dispatcher=Capturing,
        dispatcher_config={"raise_exception": True},
        function=Target(),
    )
    Capturing.broken = True
    with pytest.raises(cachewire.errors.DispatchError, match="broker unreachable"):
        cachewire.changed("seam.Item", {"key": 1})
    Capturing.broken = False
    cachewire.changed("seam.Item", {"key": 2})
    assert Capturing.seen[-1][1].raise_exception is True  # and it travels to the worker


def test_retry_policy_coerce_reads_a_retry_option() -> None:
    policy = RetryPolicy(max_attempts=2)
    assert RetryPolicy.coerce(policy, where="x") is policy
    assert RetryPolicy.coerce(None, where="x") == RetryPolicy()
    assert RetryPolicy.coerce({"max_attempts": 3}, where="x") == RetryPolicy(max_attempts=3)
    with pytest.raises(ConfigurationError, match="the 'q' option: .*max_tries"):
        RetryPolicy.coerce({"max_tries": 3}, where="the 'q' option")
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy.coerce({"max_attempts": 0}, where="the 'q' option")
