from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cachewire import errors
from cachewire._settings import configure
from cachewire.dispatch import (
    DispatchContext,
    Dispatcher,
    dispatch_stats,
    get_dispatcher,
    register_dispatcher,
    registered_dispatcher_names,
    resolve_raise_exception,
)
from cachewire.dispatchers import AsyncIODispatcher, ThreadPoolDispatcher
from cachewire.rules import Rule, changed, collect, run_rules
from cachewire.wire import decode_rule_work, encode_rule_work


class _R:
    def __init__(self, value: bool | None) -> None:
        self.raise_exception = value


LEVELS = (None, True, False)


@pytest.mark.parametrize("rule_level", LEVELS)
@pytest.mark.parametrize("dispatcher_level", LEVELS)
@pytest.mark.parametrize("global_level", (True, False))
def test_raise_exception_resolution_matrix(
    rule_level: bool | None, dispatcher_level: bool | None, global_level: bool
) -> None:
    block = {} if dispatcher_level is None else {"RAISE_EXCEPTION": dispatcher_level}
    configure(dispatcher_raise_exception=global_level, dispatcher_settings={"inline": block})
    expected = (
        rule_level
        if rule_level is not None
        else (dispatcher_level if dispatcher_level is not None else global_level)
    )
    assert resolve_raise_exception([_R(rule_level)], "inline") is expected


def test_in_a_batch_true_wins() -> None:
    assert resolve_raise_exception([_R(False), _R(True), _R(None)], "inline") is True
    assert resolve_raise_exception([_R(False), _R(None)], "inline") is False


@pytest.mark.parametrize(
    ("rule_level", "global_level", "raises"),
    [(True, False, True), (None, True, True), (False, True, False), (None, False, False)],
)
def test_worker_errors_follow_the_policy_end_to_end(
    recording_target: Any, rule_level: bool | None, global_level: bool, raises: bool
) -> None:
    # The two cases the original system got wrong: rule True + global False, rule None + global True.
    configure(dispatcher_raise_exception=global_level)
    target = recording_target("f", ("x",), ("x",))
    target.fail_with = ValueError("backend down")
    Rule(model="m", field_mapping={"x": "x"}, function=target, raise_exception=rule_level)
    if raises:
        with pytest.raises(errors.DispatchError, match="backend down"):
            changed("m", {"x": 1})
    else:
        changed("m", {"x": 1})
    assert dispatch_stats.snapshot()["rule_errors"] == 1


def test_unknown_rule_id_is_logged_counted_and_follows_the_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cachewire.dispatch"):
        run_rules(["nobody@m#1"], {"nobody@m#1": [{"x": 1}]})
    assert "nobody@m#1" in caplog.text
    assert dispatch_stats.snapshot()["unknown_rules"] == 1
    configure(dispatcher_raise_exception=True)
    with pytest.raises(errors.UnknownRuleError, match="nobody"):
        run_rules(["nobody@m#1"], {"nobody@m#1": [{"x": 1}]})


def test_run_rules_accepts_an_encoded_payload(recording_target: Any) -> None:
    target = recording_target("f", ("x",), ("x",))
    rule = Rule(model="m", field_mapping={"x": "x"}, function=target)
    run_rules(encode_rule_work([rule.id], {rule.id: [{"x": (1, "a")}]}))
    assert target.calls == [{"x": (1, "a")}]


def test_payload_rejects_other_versions() -> None:
    with pytest.raises(errors.PayloadError, match="version 99"):
        decode_rule_work('{"kind": "rules", "v": [99, 0], "body": {}}')


@register_dispatcher
class BrokenBroker(Dispatcher):
    name = "test-broken-broker"

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
    ) -> None:
        raise ConnectionError("broker unreachable")


def test_a_failing_dispatch_never_breaks_the_change_unless_the_policy_says_raise(
    recording_target: Any, caplog: pytest.LogCaptureFixture
) -> None:
    target = recording_target("f", ("x",), ("x",))
    rule = Rule(model="m", field_mapping={"x": "x"}, function=target, dispatcher=BrokenBroker)
    with caplog.at_level(logging.ERROR, logger="cachewire.rules"):
        changed("m", {"x": 1})
    assert rule.id in caplog.text
    assert dispatch_stats.snapshot()["dispatch_errors"] == 1
    configure(dispatcher_settings={"test-broken-broker": {"RAISE_EXCEPTION": True}})
    with pytest.raises(errors.DispatchError, match="broker unreachable"):
        changed("m", {"x": 1})


def test_collect_groups_batchable_rules_into_one_dispatch(recording_target: Any) -> None:
    calls: list[list[str]] = []

    @register_dispatcher
    class Counting(Dispatcher):
        name = "test-counting"

        def dispatch(
            self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
        ) -> None:
            calls.append(list(rule_ids))
            run_rules(rule_ids, rule_kwargs)

    a = recording_target("fa", ("x",), ("x",))
    b = recording_target("fb", ("x",), ("x",))
    Rule(model="m", field_mapping={"x": "x"}, function=a, dispatcher="test-counting")
    Rule(model="m", field_mapping={"x": "x"}, function=b, dispatcher="test-counting")
    with collect():
        changed("m", {"x": 1})
        changed("m", {"x": 2})
    assert len(calls) == 1 and len(calls[0]) == 2
    assert len(a.calls) == len(b.calls) == 2


def test_threadpool_runs_off_thread_and_flush_waits(recording_target: Any) -> None:
    target = recording_target("f", ("x",), ("x",))
    seen: list[str] = []
    original = target.invalidate

    def record_thread(**kwargs: Any) -> None:
        seen.append(threading.current_thread().name)
        original(**kwargs)

    target.invalidate = record_thread
    Rule(model="m", field_mapping={"x": "x"}, function=target, dispatcher="threadpool")
    for i in range(20):
        changed("m", {"x": i})
    assert ThreadPoolDispatcher.flush(timeout=30)
    assert len(target.calls) == 20
    assert all(name.startswith("cachewire") for name in seen)


def test_threadpool_warns_when_a_rule_asks_for_another_size(
    recording_target: Any, caplog: pytest.LogCaptureFixture
) -> None:
    get_dispatcher("threadpool", {})._executor()  # type: ignore[attr-defined]
    size = ThreadPoolDispatcher._pool_size
    with caplog.at_level(logging.WARNING, logger="cachewire.dispatch"):
        get_dispatcher("threadpool", {"max_workers": size + 3})._executor()  # type: ignore[attr-defined]
    assert "keeps that size" in caplog.text


async def test_asyncio_dispatcher_runs_on_the_loop_and_keeps_strong_references(
    recording_target: Any,
) -> None:
    target = recording_target("f", ("x",), ("x",))
    Rule(model="m", field_mapping={"x": "x"}, function=target, dispatcher="asyncio")
    changed("m", {"x": 1})
    assert target.calls == []  # scheduled, not run yet
    assert len(AsyncIODispatcher._pending_tasks) == 1
    await AsyncIODispatcher.drain()
    assert target.calls == [{"x": 1}]
    assert not AsyncIODispatcher._pending_tasks


async def test_asyncio_dispatcher_from_a_thread_uses_the_captured_loop(
    recording_target: Any,
) -> None:
    target = recording_target("f", ("x",), ("x",))
    Rule(model="m", field_mapping={"x": "x"}, function=target, dispatcher="asyncio")
    loop_thread = threading.get_ident()
    ran_on: list[int] = []
    original = target.invalidate

    def record(**kwargs: Any) -> None:
        ran_on.append(threading.get_ident())
        original(**kwargs)

    target.invalidate = record
    with collect():  # captures the running loop
        changed("m", {"x": 1})
        # Flushing happens in a worker thread, as an on-commit hook of a sync ORM would.
        batch_exit = asyncio.Event()
    await asyncio.sleep(0)
    await AsyncIODispatcher.drain()
    batch_exit.set()
    assert ran_on == [loop_thread]


def test_asyncio_dispatcher_without_loop_falls_back_inline(
    recording_target: Any, caplog: pytest.LogCaptureFixture
) -> None:
    target = recording_target("f", ("x",), ("x",))
    Rule(model="m", field_mapping={"x": "x"}, function=target, dispatcher="asyncio")
    with caplog.at_level(logging.DEBUG, logger="cachewire.dispatch"):
        changed("m", {"x": 1})
    assert target.calls == [{"x": 1}]
    assert "running inline" in caplog.text


def test_registered_names_are_sorted_and_include_builtins() -> None:
    names = registered_dispatcher_names()
    assert names == sorted(names)
    assert {"inline", "threadpool", "asyncio"} <= set(names)


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    pkg = tmp_path / "cw_plugin_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from cachewire.dispatch import Dispatcher
            LOADED = True
            class Good(Dispatcher):
                name = "plugin-good"
                def dispatch(self, *, rule_ids, rule_kwargs, context):
                    pass
            """
        )
    )
    (pkg / "needs_framework.py").write_text("import some_framework_that_is_not_installed\n")
    (pkg / "broken.py").write_text("raise RuntimeError('plugin bug')\n")
    dist = tmp_path / "cw_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cw-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[cachewire.dispatchers]\n"
        "plugin-good = cw_plugin_demo:Good\n"
        "plugin-missing = cw_plugin_demo.needs_framework:X\n"
        "plugin-broken = cw_plugin_demo.broken:X\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("cw_plugin_demo")]:
            del sys.modules[name]


def test_entry_point_plugins_are_listed_without_import_and_loaded_on_use(plugins: Path) -> None:
    names = registered_dispatcher_names()
    assert {"plugin-good", "plugin-missing", "plugin-broken"} <= set(names)
    assert "cw_plugin_demo" not in sys.modules
    assert get_dispatcher("plugin-good").name == "plugin-good"
    with pytest.raises(errors.DispatcherUnavailableError, match="cw-plugin-demo"):
        get_dispatcher("plugin-missing")
    with pytest.raises(errors.ConfigurationError, match="cw-plugin-demo.*plugin bug"):
        get_dispatcher("plugin-broken")


def test_register_dispatcher_rejects_bad_classes() -> None:
    with pytest.raises(errors.ConfigurationError, match="non-empty"):

        @register_dispatcher
        class Nameless(Dispatcher):
            def dispatch(self, *, rule_ids: Sequence[str], rule_kwargs: Any, **c: Any) -> None:
                pass

    with pytest.raises(errors.ConfigurationError, match="already taken"):

        @register_dispatcher
        class Impostor(Dispatcher):
            name = "inline"

            def dispatch(self, *, rule_ids: Sequence[str], rule_kwargs: Any, **c: Any) -> None:
                pass
