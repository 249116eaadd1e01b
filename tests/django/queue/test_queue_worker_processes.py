"""The queue with real ``manage.py cachewire_worker`` processes on PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import queue_jobs
from django.db import connections, transaction
from queue_fixtures import queue_settings  # noqa: F401 - autouse

from cachewire_django.queue import Job, JobState, schedule

HERE = Path(__file__).parent

pytestmark = [
    pytest.mark.postgres,
    # "default" too: Django sets up every alias "pg" depends on
    pytest.mark.django_db(transaction=True, databases=["default", "pg"]),
    # Hang detectors only: worker processes start slowly on a loaded machine.
    pytest.mark.timeout(400),
]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Wait until ``condition()`` holds, checking the database every 20 ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Workers:
    """Worker processes of this test, stopped (then killed) at the end."""

    def __init__(self, **env: str) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "DJANGO_SETTINGS_MODULE": "queue_worker_settings",
            "CWQ_DB_NAME": connections["pg"].settings_dict["NAME"],
            **env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "cachewire_worker", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers() -> Iterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(**env: str) -> Workers:
        made.append(Workers(**env))
        return made[-1]

    yield make
    for group in made:
        group.stop()
    connections["pg"].close()


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    return []


def _count(**filters: Any) -> int:
    return Job.objects.using("pg").filter(**filters).count()


def test_queue_fault_three_workers_drain_while_one_is_killed_repeatedly(
    workers: Callable[..., Workers],
) -> None:
    table = f"cwq_fault_{uuid.uuid4().hex[:12]}"
    with connections["pg"].cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (job integer NOT NULL, pid integer NOT NULL)")
    total = 2000
    with transaction.atomic(using="pg"):
        for number in range(total):
            schedule(
                queue_jobs.mark,
                args=[table, number],
                meta={"atomic": True},
                using="pg",
            )
    group = workers(CWQ_LEASE_SECONDS="1", CWQ_MAX_ATTEMPTS="50")
    victim = group.start("--name", "victim")
    for index in range(2):
        group.start("--name", f"steady-{index}")

    def executed() -> int:
        with connections["pg"].cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            return int(cursor.fetchone()[0])

    kills = 0
    killed_pids: set[int] = set()
    while kills < 5 and executed() < total * 0.8:
        mark = executed()
        target = min(mark + 150, total)
        _wait_for(lambda: executed() >= target, "progress between kills")  # noqa: B023
        for child in _children(victim.pid):
            if child not in killed_pids:
                os.kill(child, signal.SIGKILL)
                killed_pids.add(child)
                kills += 1
    assert kills >= 2, "the victim's worker process was never killed"
    _wait_for(lambda: _count(state=JobState.DONE) == total, "every job done", timeout=180)

    with connections["pg"].cursor() as cursor:
        cursor.execute(f"SELECT job, count(*) FROM {table} GROUP BY job HAVING count(*) <> 1")
        assert cursor.fetchall() == []  # no job's effect committed twice
        cursor.execute(f"SELECT count(DISTINCT job) FROM {table}")
        assert cursor.fetchone()[0] == total  # none lost
        cursor.execute(f"DROP TABLE {table}")
    assert _count(state=JobState.RUNNING) == 0
    assert _count(state=JobState.FAILED) == 0


def test_queue_worker_wakes_on_notify_and_finishes_its_job_on_sigterm(
    workers: Callable[..., Workers],
) -> None:
    # Polling once a minute: only a notification can start these jobs in time.
    group = workers(CWQ_POLL_SECONDS="60")
    process = group.start("--concurrency", "2")
    assert process.stdout is not None
    assert b"cachewire worker" in process.stdout.readline()
    quick = schedule(queue_jobs.noop, using="pg")
    _wait_for(lambda: _count(pk=quick.pk, state=JobState.DONE) == 1, "the notified job")
    slow = schedule(queue_jobs.sleep, args=[1.0], using="pg")
    _wait_for(lambda: _count(pk=slow.pk, state=JobState.RUNNING) == 1, "the slow job to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert _count(pk=slow.pk, state=JobState.DONE) == 1


def test_queue_timeout_escalates_to_killing_the_process(workers: Callable[..., Workers]) -> None:
    group = workers()
    group.start()
    polite = schedule(
        queue_jobs.sleep, args=[30], meta={"timeout": 0.3, "max_attempts": 1}, using="pg"
    )
    stubborn = schedule(
        queue_jobs.ignore_alarm_and_sleep,
        args=[30],
        meta={"timeout": 0.3, "max_attempts": 1},
        using="pg",
    )
    after = schedule(queue_jobs.noop, priority=0, using="pg")
    _wait_for(lambda: _count(pk=after.pk, state=JobState.DONE) == 1, "the job after both")
    polite_job = Job.objects.using("pg").get(pk=polite.pk)
    stubborn_job = Job.objects.using("pg").get(pk=stubborn.pk)
    assert polite_job.state == stubborn_job.state == JobState.FAILED
    assert "TaskTimeoutError" in polite_job.errors[0]["error"]
    assert "ran longer than its timeout" in polite_job.errors[0]["error"]
    assert "killed" in stubborn_job.errors[0]["error"]
