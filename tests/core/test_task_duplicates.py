"""Duplicate policies in one process: five identical submissions while the first runs."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachewire.dispatch import Dispatcher
from cachewire.tasks import LocalGuard, TaskMessage, TaskRegistry, run_task, task, task_stats

pytestmark = pytest.mark.timeout(20)


class ThreadPerTask(Dispatcher):
    """Runs each message on its own thread; `wait_idle` returns when all of them finished."""

    name = "test-duplicates-threads"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._pending = 0
        self._idle = threading.Condition()

    def dispatch(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def submit_task(self, message: TaskMessage) -> None:
        with self._idle:
            self._pending += 1
        threading.Thread(target=self._run, args=(message,)).start()

    def _run(self, message: TaskMessage) -> None:
        try:
            run_task(message)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self) -> None:
        with self._idle:
            assert self._idle.wait_for(lambda: self._pending == 0, timeout=15)


class Probe:
    """Counts runs and the most runs seen at once; the first run waits for `release`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0
        self.active = 0
        self.max_active = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.runs += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.started.set()
        assert self.release.wait(15)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


EXPECTED = {
    "parallel": (5, ["accepted"] * 5),
    "discard": (1, ["accepted"] + ["discarded"] * 4),
    "serial": (5, ["accepted"] + ["queued"] * 4),
    "queue_one": (2, ["accepted", "queued"] + ["discarded"] * 3),
}


@pytest.mark.parametrize("policy", sorted(EXPECTED))
def test_five_identical_submissions_while_the_first_runs(policy: str) -> None:
    registry = TaskRegistry(f"dup-{os.urandom(4).hex()}")
    dispatcher = ThreadPerTask()
    probe = Probe()

    @task(name="dup", registry=registry, dispatcher=dispatcher, guard=LocalGuard())
    def work(x: int) -> None:
        probe.enter()
        probe.leave()

    first = work.apply_async((1,), on_duplicate=policy)
    assert probe.started.wait(15)
    outcomes = [first.outcome] + [
        work.apply_async((1,), on_duplicate=policy).outcome for _ in range(4)
    ]
    probe.release.set()
    dispatcher.wait_idle()

    runs, expected_outcomes = EXPECTED[policy]
    assert outcomes == expected_outcomes
    assert probe.runs == runs
    if policy in ("serial", "queue_one", "discard"):
        assert probe.max_active == 1


def test_different_arguments_are_not_duplicates() -> None:
    registry = TaskRegistry(f"dup-{os.urandom(4).hex()}")
    dispatcher = ThreadPerTask()
    probe = Probe()

    @task(name="d", registry=registry, dispatcher=dispatcher, guard=LocalGuard())
    def work(x: int) -> None:
        probe.enter()
        probe.leave()

    outcomes = [work.apply_async((i,), on_duplicate="discard").outcome for i in range(3)]
    probe.release.set()
    dispatcher.wait_idle()
    assert outcomes == ["accepted"] * 3
    assert probe.runs == 3


def test_a_failing_run_still_releases_the_next_held_message() -> None:
    registry = TaskRegistry(f"dup-{os.urandom(4).hex()}")
    dispatcher = ThreadPerTask()
    probe = Probe()
    failures = iter([True, False])

    @task(name="f", registry=registry, dispatcher=dispatcher, guard=LocalGuard())
    def work() -> None:
        probe.enter()
        probe.leave()
        if next(failures):
            raise RuntimeError("first run fails")

    before = task_stats().get("failed", 0)
    assert work.apply_async(on_duplicate="serial").outcome == "accepted"
    assert probe.started.wait(15)
    assert work.apply_async(on_duplicate="serial").outcome == "queued"
    probe.release.set()
    dispatcher.wait_idle()
    assert probe.runs == 2
    assert task_stats()["failed"] == before + 1
    # The key is free again: a new submission is accepted.
    assert work.apply_async(on_duplicate="discard").outcome == "accepted"
    dispatcher.wait_idle()
    assert probe.runs == 3


def test_discards_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    registry = TaskRegistry(f"dup-{os.urandom(4).hex()}")
    dispatcher = ThreadPerTask()
    probe = Probe()

    @task(name="visible", registry=registry, dispatcher=dispatcher, guard=LocalGuard())
    def work() -> None:
        probe.enter()
        probe.leave()

    before = task_stats().get("discarded", 0)
    work.apply_async(on_duplicate="discard")
    assert probe.started.wait(15)
    with caplog.at_level(logging.INFO, logger="cachewire.tasks"):
        result = work.apply_async(on_duplicate="discard")
    probe.release.set()
    dispatcher.wait_idle()
    assert result.outcome == "discarded"
    assert result.uuid in caplog.text
    assert task_stats()["discarded"] == before + 1


def test_local_guard_admit_and_finish() -> None:
    guard = LocalGuard()
    key = TaskMessage(name="v").duplicate_key
    assert guard.admit(key, "queue_one", "m1") == "accepted"
    assert guard.admit(key, "queue_one", "m2") == "queued"
    assert guard.admit(key, "queue_one", "m3") == "discarded"
    assert guard.finish(key) == "m2"
    assert guard.admit(key, "discard", "m4") == "discarded"
    assert guard.finish(key) is None
    assert guard.admit(key, "discard", "m5") == "accepted"


policies = st.sampled_from(["discard", "serial", "queue_one"])
steps = st.lists(st.one_of(st.tuples(st.just("admit"), policies), st.just(("finish", ""))))


@given(steps)
def test_local_guard_matches_the_policy_model(ops: list[tuple[str, str]]) -> None:
    guard = LocalGuard()
    running = False
    held: list[str] = []
    for i, (op, policy) in enumerate(ops):
        if op == "admit":
            outcome = guard.admit("k", policy, f"m{i}")
            if not running:
                running, expected = True, "accepted"
            elif policy == "discard" or (policy == "queue_one" and held):
                expected = "discarded"
            else:
                held.append(f"m{i}")
                expected = "queued"
            assert outcome == expected
        elif running:
            assert guard.finish("k") == (held.pop(0) if held else None)
            running = bool(held) or guard.admit("k", "discard", "probe") != "accepted"
            if not running:
                # The probe took the free slot; give it back.
                assert guard.finish("k") is None
