"""The django_q dispatcher on django-q2's ORM broker on PostgreSQL.

The conformance suite runs with django-q's broker and signing in a worker thread of this process
(its recording functions live here); the end-to-end test runs a real ``qcluster`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pydoc
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cwdj_support import (
    DATABASE_URL,
    PG_TEST_NAME,
    Q_CLUSTER_NAME,
    REDIS_KEY_PREFIX,
    _pg,
    transactional,
)
from django.db import connections, transaction

from cachewire.dispatch import dispatch_stats
from cachewire.testing import DispatcherContract, LogWatch, TcpProxy

pytestmark = [pytest.mark.postgres]


class InProcessWorker:
    """Pulls tasks from the broker as django-q's pusher does and runs them on a thread; only
    that thread touches the database."""

    def __init__(self) -> None:
        from django_q.brokers import get_broker

        # The default cluster, and the one the task contract names as its queue.
        self.brokers = [get_broker(), get_broker("contract")]
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.ran = 0  # tasks run, each counted once
        self._lock = threading.Lock()
        self._waiters: list[threading.Event] = []
        self.thread = threading.Thread(target=self._loop, name="django-q-test-worker")

    def _loop(self) -> None:
        from django_q.signing import SignedPackage

        try:
            while not self.stop.is_set():
                with self._lock:
                    waiters, self._waiters = self._waiters, []
                try:
                    tasks = [
                        (broker, *task)
                        for broker in self.brokers
                        for task in broker.dequeue() or ()
                    ]
                except Exception as exc:  # the broker is down: try again next round
                    self.failures.append(repr(exc))
                    with self._lock:
                        self._waiters.extend(waiters)
                    self.stop.wait(0.05)
                    continue
                for broker, ack_id, package in tasks:
                    task = SignedPackage.loads(package)
                    try:
                        pydoc.locate(task["func"])(*task["args"], **task["kwargs"])
                    except Exception as exc:
                        self.failures.append(repr(exc))
                    self.ran += 1
                    broker.acknowledge(ack_id)
                if tasks or any(b.queue_size() or b.lock_size() for b in self.brokers):
                    with self._lock:
                        self._waiters.extend(waiters)  # not idle yet: ask again next round
                else:
                    for waiter in waiters:
                        waiter.set()
                self.stop.wait(0.02)
        finally:
            connections.close_all()

    async def wait_idle(self) -> None:
        """Return once the worker found the queue empty after this call began."""
        idle = threading.Event()
        with self._lock:
            self._waiters.append(idle)
        assert await asyncio.to_thread(idle.wait, 20), "the django-q queue did not drain"


@pytest.fixture
def q_worker(transactional_db: None, django_db_blocker: Any) -> Iterator[InProcessWorker]:
    worker = InProcessWorker()
    worker.thread.start()
    yield worker
    worker.stop.set()
    worker.thread.join(10)
    from cachewire_django.django_q import DjangoQDispatcher

    DjangoQDispatcher.close()


@transactional("default", "pg")
class TestDjangoQContract(DispatcherContract):
    expect_batching = True

    @pytest.fixture
    def dispatcher(self) -> str:
        return "django_q"

    @pytest.fixture
    def wait_idle(self, q_worker: InProcessWorker) -> Any:
        return q_worker.wait_idle


# ----------------------------------------------------------- a real cluster


@pytest.fixture(scope="session")
def qcluster(django_db_setup: None, django_db_blocker: Any, redis_url: str) -> Iterator[Any]:
    """A ``manage.py qcluster`` process on this run's test database and queue."""
    here = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(here), *sys.path]),
        "DJANGO_SETTINGS_MODULE": "qcluster_settings",
        "CW_PG_NAME": PG_TEST_NAME,
        "CW_PG_USER": _pg.username or "postgres",
        "CW_PG_PASSWORD": _pg.password or "",
        "CW_PG_HOST": _pg.hostname or "127.0.0.1",
        "CW_PG_PORT": str(_pg.port or 5432),
        "CW_REDIS_URL": redis_url,
        "CW_REDIS_KEY_PREFIX": REDIS_KEY_PREFIX,
        "CW_Q_CLUSTER": Q_CLUSTER_NAME,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "qcluster"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _drained(deadline: float) -> None:
    from django_q.brokers import get_broker

    broker = get_broker()
    while broker.queue_size() or broker.lock_size():
        assert time.monotonic() < deadline, f"the cluster did not take the work ({DATABASE_URL})"
        time.sleep(0.02)


@pytest.mark.timeout(60)
@transactional("default", "pg")
def test_a_real_cluster_runs_the_rules_after_the_commit(qcluster: Any) -> None:
    from testapp.cachewire import CALLS, board
    from testapp.models import Ticket

    with transaction.atomic(using="pg"):
        ticket = Ticket.objects.using("pg").create(board_id=7, title="a")
        other = Ticket.objects.using("pg").create(board_id=8, title="b")
    _drained(time.monotonic() + 40)
    assert qcluster.poll() is None, qcluster.stderr.read().decode()
    CALLS.clear()
    board(7)
    board(8)
    assert board(7) == board(7)
    assert CALLS == {"board": 2}
    before = dispatch_stats.snapshot()["dispatched"]
    ticket.board_id = 8
    ticket.save()  # moves the ticket: boards 7 and 8, in one django-q task
    assert dispatch_stats.snapshot()["dispatched"] == before + 1
    _drained(time.monotonic() + 40)
    board(7)
    board(8)
    assert CALLS == {"board": 4}
    other.title = "changed"
    other.save()
    _drained(time.monotonic() + 40)
    board(7)  # untouched by the last change
    assert CALLS == {"board": 4}
    board(8)
    assert CALLS == {"board": 5}


@pytest.mark.timeout(60)
@transactional("default", "pg", "qbroker")
async def test_a_broker_outage_never_breaks_a_save(
    q_worker: InProcessWorker, django_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer reaches the ORM broker through a proxy this test cuts (the ``qbroker`` alias,
    a mirror of ``pg``); the data itself is saved on a direct connection, as when the queue lives
    in another database."""
    from asgiref.sync import sync_to_async

    await sync_to_async(_outage_story, thread_sensitive=True)(q_worker, monkeypatch)


@contextlib.contextmanager
def broker_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """This thread's producer reaches the ORM broker (the ``qbroker`` alias, a mirror of ``pg``)
    through a proxy the test cuts; the worker thread and the data connect directly."""
    from django_q.conf import Conf

    broker_db = connections["qbroker"]
    mirrored = broker_db.settings_dict  # the pg alias's own dict: replaced, never changed
    proxy = TcpProxy(mirrored["HOST"], int(mirrored["PORT"])).start()
    broker_db.close()
    broker_db.settings_dict = {**mirrored, "PORT": str(proxy.port)}
    monkeypatch.setattr(Conf, "ORM", "qbroker")
    try:
        yield proxy
    finally:
        proxy.close()
        broker_db.close()
        broker_db.settings_dict = mirrored


def _outage_story(q_worker: InProcessWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test import override_settings
    from testapp.cachewire import CALLS, board
    from testapp.models import Ticket

    with broker_through_a_proxy(monkeypatch) as proxy:
        ticket = Ticket.objects.using("pg").create(board_id=41)
        q_worker_idle(q_worker)
        CALLS.clear()
        board(41)
        proxy.cut()
        errors = dispatch_stats.snapshot()["dispatch_errors"]
        ticket.title = "saved while the broker is down"
        ticket.save()  # no error reaches the caller
        assert dispatch_stats.snapshot()["dispatch_errors"] == errors + 1
        assert Ticket.objects.using("pg").get().title == "saved while the broker is down"
        board(41)
        assert CALLS == {"board": 1}  # not invalidated: logged and counted (FALLBACK "log")
        fallback = {"DISPATCHER_SETTINGS": {"django_q": {"FALLBACK": "inline"}}}
        with override_settings(CACHEWIRE={"DEFAULT_DISPATCHER": "recording", **fallback}):
            ticket.title = "saved with the inline fallback"
            ticket.save()
        board(41)
        assert CALLS == {"board": 2}  # the fallback ran it here
        proxy.restore()
        ticket.title = "saved after the broker came back"
        ticket.save()
        q_worker_idle(q_worker)
        board(41)
        assert CALLS == {"board": 3}  # through the queue again


@pytest.fixture
def retry_logged() -> Iterator[LogWatch]:
    """Set when the dispatcher logs that it will try the broker again."""
    with LogWatch("cachewire.django_q", "retrying") as watch:
        yield watch


@pytest.mark.timeout(60)
@transactional("default", "pg", "qbroker")
def test_with_the_raise_policy_a_change_during_an_outage_is_enqueued_once_the_broker_is_back(
    q_worker: InProcessWorker,
    django_redis: str,
    monkeypatch: pytest.MonkeyPatch,
    retry_logged: LogWatch,
) -> None:
    from django.test import override_settings
    from testapp.cachewire import CALLS, board
    from testapp.models import Ticket

    raising = {
        "DEFAULT_DISPATCHER": "recording",
        "DISPATCHER_SETTINGS": {
            "django_q": {
                # A queue only the in-process worker reads (not a qcluster another test left).
                "CLUSTER": "contract",
                "RAISE_EXCEPTION": True,
                "RETRY": {"max_attempts": 500, "base_delay": 0.02, "max_delay": 0.1},
            }
        },
    }
    with broker_through_a_proxy(monkeypatch) as proxy, override_settings(CACHEWIRE=raising):
        ticket = Ticket.objects.using("pg").create(board_id=42)
        q_worker_idle(q_worker)
        CALLS.clear()
        board(42)
        before = dispatch_stats.snapshot()
        ran = q_worker.ran
        proxy.cut()
        # The broker comes back once the dispatcher has failed to reach it and said it retries.
        restorer = threading.Thread(target=lambda: retry_logged.seen.wait(20) and proxy.restore())
        restorer.start()
        ticket.title = "saved while the broker is down"
        ticket.save()  # retries the enqueue until the broker is back; no error
        restorer.join(20)
        assert retry_logged.seen.is_set()
        after = dispatch_stats.snapshot()
        assert after["dispatch_errors"] == before["dispatch_errors"]
        assert after["dispatched"] == before["dispatched"] + 1
        assert Ticket.objects.using("pg").get().title == "saved while the broker is down"
        q_worker_idle(q_worker)
        assert q_worker.ran == ran + 1  # enqueued once, run once
        assert q_worker.failures == []
        board(42)
        assert CALLS == {"board": 2}  # invalidated through the queue


def q_worker_idle(worker: InProcessWorker) -> None:
    asyncio.run(worker.wait_idle())


def _task_result(task_uuid: str, deadline: float) -> Any:
    """The django-q Task row of a cachewire task (its django-q task id is its own), once saved."""
    from django_q.models import Task

    while True:
        found = [t for t in Task.objects.using("pg").all() if task_uuid in str(t.args)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the cluster saved no result"
        time.sleep(0.05)


@pytest.mark.timeout(60)
@transactional("default", "pg")
def test_tasks_run_on_the_cluster_with_its_timeout(qcluster: Any) -> None:
    from testapp.cachewire import add, slow

    submitted = add.delay(2, 3)
    done = _task_result(submitted.uuid, time.monotonic() + 40)
    assert done.success
    assert done.result["sum"] == 5
    assert done.result["uuid"] == submitted.uuid
    assert str(done.result["worker"]).startswith("Process-")  # the cluster's worker process
    stopped = _task_result(slow.delay(10).uuid, time.monotonic() + 40)
    assert not stopped.success
    assert "TaskTimeoutError" in str(stopped.result)


def test_the_enqueue_options_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from cachewire import DispatchContext
    from cachewire.testing import override_settings
    from cachewire_django import django_q

    sent: list[tuple[str, dict[str, Any]]] = []

    def async_task(function_path: str, body: str, *, q_options: dict[str, Any]) -> None:
        sent.append((function_path, dict(q_options)))
        q_options.clear()  # django-q takes items out of the dict: the next enqueue is unaffected

    monkeypatch.setattr(django_q, "_async_task", lambda: async_task)
    dispatcher = django_q.DjangoQDispatcher(group="rules")
    context = DispatchContext()

    def dispatch() -> None:
        dispatcher.dispatch(rule_ids=["r"], rule_kwargs={"r": [{"x": 1}]}, context=context)

    dispatch()
    dispatch()
    block = {"CLUSTER": "other", "TIMEOUT": 2.6, "FUNCTION_PATH": "app.run", "GROUP": "no"}
    with override_settings(dispatcher_settings={"django_q": block}):
        dispatch()
    dispatch()
    default = (django_q.DEFAULT_FUNCTION_PATH, {"group": "rules"})
    changed = ("app.run", {"cluster": "other", "group": "rules", "timeout": 3})
    assert sent == [default, default, changed, default]
