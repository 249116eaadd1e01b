"""`DispatcherContract`: what every dispatcher must do, for rule work and for tasks.

Subclass it in a module pytest collects (name the subclass ``Test...``) and override:

- ``dispatcher``: a registered dispatcher name or a `Dispatcher` subclass;
- ``dispatcher_config``: the ``dispatcher_config`` rules pass (default ``{}``);
- ``wait_idle``: an async callable returning once all work handed over so far has finished.

Set ``expect_batching`` to True or False to check how rules are grouped (None skips that check).
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest

from cachewire._settings import configure, get_settings
from cachewire.dispatch import DispatchContext, Dispatcher, dispatch_stats, resolve_dispatcher
from cachewire.errors import ConfigurationError, DispatchError, PayloadError
from cachewire.rules import Rule, changed, collect, unregister_all
from cachewire.testing._task_contract import TaskDispatchContract
from cachewire.wire import encode_envelope
from cachewire.worker import run_work

__all__ = ["DispatcherContract", "RecordingFunction"]

WaitIdle = Callable[[], Awaitable[None]]


class RecordingFunction:
    """A stand-in for a cached function that records the invalidations it receives."""

    def __init__(self, cache_id: str, parameters: Sequence[str], partition: Sequence[str] = ()):
        self.cache_id = cache_id
        self.parameters = tuple(parameters)
        self.partition = tuple(partition)
        self.calls: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    def check_invalidation_params(self, names: Any) -> None:
        unknown = set(names) - set(self.parameters)
        if unknown:
            raise ConfigurationError(f"{self.cache_id} has no parameter {sorted(unknown)}")

    def invalidate(self, **kwargs: Any) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.calls.append(kwargs)

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


@pytest.mark.timeout(30)
class DispatcherContract(TaskDispatchContract):
    """Conformance tests for rule delivery, argument encoding and the error policy."""

    expect_batching: ClassVar[bool | None] = None

    @pytest.fixture
    def dispatcher_config(self) -> dict[str, Any]:
        return {}

    @pytest.fixture(autouse=True)
    def _isolated_rules(self) -> Iterator[None]:
        saved = get_settings()
        dispatch_stats.reset()
        yield
        unregister_all()
        configure(
            dispatcher_raise_exception=saved.dispatcher_raise_exception,
            dispatcher_settings=saved.dispatcher_settings,
        )

    def _rule(self, dispatcher: Any, config: dict[str, Any], **options: Any) -> RecordingFunction:
        target = RecordingFunction(f"contract.{uuid.uuid4().hex}", ("key", "page"), ("key",))
        Rule(
            model="contract.Item",
            field_mapping={"key": "key"},
            dispatcher=dispatcher,
            dispatcher_config=config,
            function=target,
            **options,
        )
        return target

    async def test_single_rule_is_delivered(
        self, dispatcher: Any, dispatcher_config: dict[str, Any], wait_idle: WaitIdle
    ) -> None:
        target = self._rule(dispatcher, dispatcher_config)
        changed("contract.Item", {"key": 1})
        await wait_idle()
        assert target.calls == [{"key": 1}]

    async def test_batched_rules_are_all_delivered(
        self, dispatcher: Any, dispatcher_config: dict[str, Any], wait_idle: WaitIdle
    ) -> None:
        targets = [self._rule(dispatcher, dispatcher_config) for _ in range(3)]
        with collect():
            changed("contract.Item", {"key": 1}, old={"key": 2})
            changed("contract.Item", {"key": 1})
        await wait_idle()
        for target in targets:
            assert sorted(c["key"] for c in target.calls) == [1, 2]

    def test_batching_flag(self, dispatcher: Any, dispatcher_config: dict[str, Any]) -> None:
        if self.expect_batching is None:
            pytest.skip("expect_batching is not set for this dispatcher")
        instance = resolve_dispatcher(dispatcher, dispatcher_config)
        assert instance.supports_batching is self.expect_batching

    @pytest.mark.parametrize(
        "value",
        [
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            decimal.Decimal("10.50"),
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            dt.date(2026, 1, 2),
            "odd:*?[]|\n ünïcode",
            (1, "two"),
        ],
    )
    async def test_arguments_round_trip(
        self, dispatcher: Any, dispatcher_config: dict[str, Any], wait_idle: WaitIdle, value: Any
    ) -> None:
        target = self._rule(dispatcher, dispatcher_config)
        changed("contract.Item", {"key": value})
        await wait_idle()
        assert target.calls == [{"key": value}]
        assert type(target.calls[0]["key"]) is type(value)

    async def test_unknown_rule_id_is_logged_and_counted(
        self,
        dispatcher: Any,
        dispatcher_config: dict[str, Any],
        wait_idle: WaitIdle,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        instance = resolve_dispatcher(dispatcher, dispatcher_config)
        with caplog.at_level(logging.ERROR):
            instance.dispatch(
                rule_ids=["contract.missing"],
                rule_kwargs={"contract.missing": [{}]},
                context=DispatchContext(),
            )
            await wait_idle()
        assert dispatch_stats.snapshot()["unknown_rules"] == 1
        assert "contract.missing" in caplog.text

    async def test_rule_error_is_swallowed_and_counted_by_default(
        self, dispatcher: Any, dispatcher_config: dict[str, Any], wait_idle: WaitIdle
    ) -> None:
        target = self._rule(dispatcher, dispatcher_config)
        target.fail_with = ValueError("cache backend down")
        changed("contract.Item", {"key": 1})
        await wait_idle()
        assert dispatch_stats.snapshot()["rule_errors"] == 1
        assert dispatch_stats.snapshot()["rule_errors_raised"] == 0

    async def test_a_failing_dispatch_never_breaks_the_change(
        self, dispatcher: Any, dispatcher_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self._rule(dispatcher, dispatcher_config)
        cls = type(resolve_dispatcher(dispatcher, dispatcher_config))

        def broken(self: Dispatcher, **kwargs: Any) -> None:
            raise ConnectionError("runtime unreachable")

        monkeypatch.setattr(cls, "dispatch", broken)
        changed("contract.Item", {"key": 1})  # policy False: no error
        assert dispatch_stats.snapshot()["dispatch_errors"] == 1
        configure(dispatcher_raise_exception=True)
        with pytest.raises(DispatchError, match="runtime unreachable"):
            changed("contract.Item", {"key": 1})

    @pytest.mark.parametrize(("rule_level", "global_level"), [(True, False), (None, True)])
    async def test_rule_errors_surface_when_the_policy_says_raise(
        self,
        dispatcher: Any,
        dispatcher_config: dict[str, Any],
        wait_idle: WaitIdle,
        rule_level: bool | None,
        global_level: bool,
    ) -> None:
        configure(dispatcher_raise_exception=global_level)
        target = self._rule(dispatcher, dispatcher_config, raise_exception=rule_level)
        target.fail_with = ValueError("cache backend down")
        try:
            changed("contract.Item", {"key": 1})
            await wait_idle()
        except (ValueError, DispatchError):
            pass  # inline runtimes raise into the change itself
        # Wherever the work ran, the worker re-raised the error to its runtime.
        assert dispatch_stats.snapshot()["rule_errors_raised"] == 1

    def test_worker_entry_rejects_what_it_cannot_read(
        self, dispatcher: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        name = resolve_dispatcher(dispatcher).name
        bad: list[str | bytes] = [b"not json", "[1, 2]", encode_envelope("rules", {"rule_ids": 5})]
        with caplog.at_level(logging.ERROR):
            for body in bad:
                with pytest.raises(PayloadError):
                    run_work(body, dispatcher_name=name)
        assert dispatch_stats.snapshot()["rejected_messages"] == len(bad)

    def test_worker_entry_refuses_a_newer_major_version(self, dispatcher: Any) -> None:
        name = resolve_dispatcher(dispatcher).name
        newer = '{"kind": "rules", "v": [99, 0], "body": {}}'
        with pytest.raises(PayloadError, match="upgrade"):
            run_work(newer, dispatcher_name=name)
        assert dispatch_stats.snapshot()["rejected_messages"] == 1

    def test_worker_entry_accepts_a_newer_minor_version(
        self, dispatcher: Any, dispatcher_config: dict[str, Any]
    ) -> None:
        target = self._rule(dispatcher, dispatcher_config)
        rule_id = next(iter(_rules_of(target)))
        name = resolve_dispatcher(dispatcher, dispatcher_config).name
        newer = {
            "kind": "rules",
            "v": [1, 99],
            "body": {
                "rule_ids": [rule_id],
                "rule_kwargs": {rule_id: [{"key": 7}]},
                "context": {},
                "added_in_a_later_minor": True,
            },
        }
        import json

        run_work(json.dumps(newer), dispatcher_name=name)
        assert target.calls == [{"key": 7}]


def _rules_of(target: RecordingFunction) -> list[str]:
    from cachewire.rules import rules_for_model

    return [rule.id for rule in rules_for_model("contract.Item") if rule.target is target]
