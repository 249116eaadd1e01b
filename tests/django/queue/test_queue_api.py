"""The durable queue in-process, on SQLite (``default``) and PostgreSQL (``pg``)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import queue_jobs
from django.db import connections, transaction
from django.utils import timezone
from queue_fixtures import queue_settings  # noqa: F401 - autouse

from cachewire.errors import ConfigurationError, TaskArgumentError
from cachewire_django.queue import Job, JobState, QueueWorker, deschedule, health, schedule
from cachewire_django.queue._worker import record_failure

ALIASES = [
    pytest.param("default", marks=pytest.mark.django_db(transaction=True)),
    pytest.param(
        "pg",
        marks=[pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases=["pg"])],
    ),
]

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.CACHEWIRE_QUEUE = {
        "ALLOWED_MODULES": ["queue_jobs"],
        "LEASE_SECONDS": 30,
        "RETRY_BASE_DELAY": 10.0,
        "RETRY_MAX_DELAY": 60.0,
        "MAX_ATTEMPTS": 3,
    }
    queue_jobs.calls.clear()
    return request.param


def _count_from_another_connection(alias: str) -> int:
    """Jobs visible to a second connection (a thread has its own)."""
    seen: list[int] = []

    def look() -> None:
        try:
            seen.append(Job.objects.using(alias).count())
        finally:
            connections[alias].close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return seen[0]


def _drain(alias: str, **kwargs: Any) -> tuple[int, int]:
    return QueueWorker(using=alias).run_pass(**kwargs)


def test_queue_rollback_leaves_no_job(alias: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        schedule(queue_jobs.record, args=[1], using=alias)
        if alias == "pg":  # SQLite's shared cache would block a second reader
            assert _count_from_another_connection(alias) == 0
        raise RuntimeError("roll back")
    assert Job.objects.using(alias).count() == 0
    with transaction.atomic(using=alias):
        schedule(queue_jobs.record, args=[2], using=alias)
    assert _count_from_another_connection(alias) == 1


def test_queue_runs_by_priority_then_schedule_then_id(alias: str) -> None:
    past = timezone.now() - dt.timedelta(minutes=5)
    older = past - dt.timedelta(minutes=5)
    schedule("queue_jobs.record", args=["plain-5a"], using=alias)
    schedule("queue_jobs.record", args=["scheduled-5"], run_after=past, using=alias)
    schedule("queue_jobs.record", args=["plain-5b"], using=alias)
    schedule("queue_jobs.record", args=["scheduled-5-older"], run_after=older, using=alias)
    schedule("queue_jobs.record", args=["plain-9"], priority=9, using=alias)
    schedule(
        "queue_jobs.record",
        args=["future"],
        run_after=timezone.now() + dt.timedelta(hours=1),
        using=alias,
    )
    schedule("queue_jobs.record", args=["plain-1"], priority=1, using=alias)
    assert _drain(alias) == (6, 0)
    assert queue_jobs.calls == [
        "plain-9",
        "scheduled-5-older",
        "scheduled-5",
        "plain-5a",
        "plain-5b",
        "plain-1",
    ]
    assert Job.objects.using(alias).filter(state=JobState.READY).get().args == ["future"]


def test_queue_deschedule_cancels_matching_jobs_not_started(alias: str) -> None:
    schedule(queue_jobs.record, args=[1], using=alias)
    schedule(queue_jobs.record, args=[1], using=alias)
    schedule(queue_jobs.record, args=[2], using=alias)
    running = schedule(queue_jobs.record, args=[1], priority=9, using=alias)
    QueueWorker(using=alias).claim(limit=1)
    assert deschedule(queue_jobs.record, args=[1], using=alias) == 2
    assert deschedule("queue_jobs.record", args=[1], using=alias) == 0
    states = dict(Job.objects.using(alias).values_list("id", "state"))
    assert states[running.pk] == JobState.RUNNING
    assert sorted(states.values()) == ["cancelled", "cancelled", "ready", "running"]
    _drain(alias)
    assert queue_jobs.calls == [2]


def test_queue_deschedule_matches_keywords_in_any_order(alias: str) -> None:
    schedule(queue_jobs.record, kwargs={"value": {"a": 1, "b": 2}}, using=alias)
    assert deschedule(queue_jobs.record, kwargs={"value": {"b": 2, "a": 1}}, using=alias) == 1
    assert deschedule(queue_jobs.record, kwargs={"value": {"a": 1.0, "b": 2}}, using=alias) == 0


def test_queue_health_reports_every_field(alias: str) -> None:
    empty = health(using=alias)
    assert empty == {
        "states": {"ready": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0},
        "oldest_ready_age_seconds": None,
        "running_past_lease": 0,
        "failed_last_hour": 0,
        "tasks": {},
    }
    ten_minutes_ago = timezone.now() - dt.timedelta(minutes=10)
    schedule(queue_jobs.record, args=[1], run_after=ten_minutes_ago, using=alias)
    schedule(queue_jobs.noop, run_after=timezone.now() + dt.timedelta(hours=1), using=alias)
    stuck = schedule(queue_jobs.noop, using=alias)
    failed = schedule(queue_jobs.fail, meta={"max_attempts": 1}, priority=9, using=alias)
    worker = QueueWorker(using=alias)
    (claimed,) = worker.claim(limit=1)
    assert claimed.pk == failed.pk
    worker.run_job(claimed)
    schedule(queue_jobs.noop, args=[], kwargs={}, using=alias, meta={"dedup_key": "x"})
    deschedule(queue_jobs.noop, using=alias)
    stuck = (
        Job.objects.using(alias).filter(task="queue_jobs.noop", state=JobState.CANCELLED).first()
    )
    assert stuck is not None
    Job.objects.using(alias).filter(pk=stuck.pk).update(
        state=JobState.RUNNING, lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    report = health(using=alias)
    assert report["states"] == {"ready": 1, "running": 1, "done": 0, "failed": 1, "cancelled": 2}
    assert 590 < report["oldest_ready_age_seconds"] < 3600
    assert report["running_past_lease"] == 1
    assert report["failed_last_hour"] == 1
    assert report["tasks"] == {
        "queue_jobs.record": {"ready": 1},
        "queue_jobs.noop": {"running": 1, "cancelled": 2},
        "queue_jobs.fail": {"failed": 1},
    }


def test_queue_retries_with_backoff_then_fails_for_good(alias: str) -> None:
    job = schedule(queue_jobs.fail, args=["broken"], using=alias)
    for attempt in (1, 2, 3):
        before = timezone.now()
        assert _drain(alias) == (1, 1)
        job.refresh_from_db(using=alias)
        assert job.attempts == attempt
        assert [e["attempt"] for e in job.errors] == list(range(1, attempt + 1))
        assert "RuntimeError: broken" in job.errors[-1]["error"]
        assert "queue_jobs.py" in job.errors[-1]["traceback"]
        if attempt < 3:
            assert job.state == JobState.READY
            # The core policy: base 10 s doubling, jitter between half and all of it.
            ceiling = 10.0 * 2 ** (attempt - 1)
            wait = (job.run_after - before).total_seconds()
            assert ceiling / 2 - 1 <= wait <= ceiling + 1
            assert _drain(alias) == (0, 0)  # not due yet
            Job.objects.using(alias).filter(pk=job.pk).update(run_after=timezone.now())
    assert job.state == JobState.FAILED
    assert job.finished_at is not None
    assert job.claim is None


def test_queue_dedup_key_returns_the_active_job(alias: str) -> None:
    first = schedule(queue_jobs.record, args=[1], meta={"dedup_key": "k"}, using=alias)
    again = schedule(queue_jobs.record, args=[2], meta={"dedup_key": "k"}, using=alias)
    assert again.pk == first.pk
    other = schedule(queue_jobs.record, args=[3], meta={"dedup_key": "other"}, using=alias)
    assert other.pk != first.pk
    _drain(alias)
    later = schedule(queue_jobs.record, args=[4], meta={"dedup_key": "k"}, using=alias)
    assert later.pk not in (first.pk, other.pk)
    assert sorted(queue_jobs.calls) == [1, 3]


def test_queue_meta_and_functions_are_checked_at_schedule_time(alias: str) -> None:
    with pytest.raises(ConfigurationError, match="ALLOWED_MODULES"):
        schedule("os.system", args=["true"], using=alias)
    with pytest.raises(ConfigurationError, match="unknown key"):
        schedule(queue_jobs.record, meta={"retries": 3}, using=alias)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        schedule(queue_jobs.record, meta={"max_attempts": 0}, using=alias)
    with pytest.raises(ConfigurationError, match="aware"):
        schedule(queue_jobs.record, run_after=dt.datetime(2030, 1, 1), using=alias)
    with pytest.raises(TaskArgumentError):
        schedule(queue_jobs.record, args=[object()], using=alias)
    assert Job.objects.using(alias).count() == 0


def test_queue_a_lost_worker_job_runs_again_and_the_old_claim_cannot_finish(alias: str) -> None:
    schedule(queue_jobs.record, args=["once"], using=alias)
    lost_worker = QueueWorker(using=alias)
    (held,) = lost_worker.claim()
    Job.objects.using(alias).filter(pk=held.pk).update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    worker = QueueWorker(using=alias)
    assert worker.reap() == 1
    (again,) = worker.claim()
    assert again.attempts == 2
    assert again.errors[0]["error"].startswith("worker lost")
    assert not lost_worker._complete(held, None)  # the old claim no longer holds the job
    assert not record_failure(alias, held, "late", "")
    assert worker.run_job(again)
    again.refresh_from_db(using=alias)
    assert again.state == JobState.DONE
    assert queue_jobs.calls == ["once"]


def test_queue_a_lost_job_without_attempts_left_fails(alias: str) -> None:
    schedule(queue_jobs.record, args=["x"], meta={"max_attempts": 1}, using=alias)
    (held,) = QueueWorker(using=alias).claim()
    Job.objects.using(alias).filter(pk=held.pk).update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert QueueWorker(using=alias).reap() == 1
    held.refresh_from_db(using=alias)
    assert held.state == JobState.FAILED


def test_queue_leases_are_renewed_while_held(alias: str) -> None:
    schedule(queue_jobs.record, args=[1], using=alias)
    worker = QueueWorker(using=alias)
    (held,) = worker.claim()
    Job.objects.using(alias).filter(pk=held.pk).update(lease_until=timezone.now())
    assert worker.renew_leases() == 1
    held.refresh_from_db(using=alias)
    assert held.lease_until > timezone.now() + dt.timedelta(seconds=20)


def test_queue_atomic_job_rolls_back_its_writes_on_failure(alias: str) -> None:
    job = schedule(queue_jobs.schedule_then_fail, args=[alias], meta={"atomic": True}, using=alias)
    assert _drain(alias) == (1, 1)
    assert list(Job.objects.using(alias).values_list("task", flat=True)) == [job.task]
    plain = schedule(
        queue_jobs.schedule_then_fail, args=[alias], meta={"max_attempts": 1}, using=alias
    )
    _drain(alias)
    assert Job.objects.using(alias).exclude(pk__in=[job.pk, plain.pk]).count() == 1


def test_queue_stop_on_error_leaves_the_rest_queued(alias: str) -> None:
    schedule(queue_jobs.fail, priority=9, using=alias)
    schedule(queue_jobs.record, args=[1], using=alias)
    assert _drain(alias, stop_on_error=True) == (1, 1)
    assert queue_jobs.calls == ["boom"]
    assert Job.objects.using(alias).filter(state=JobState.READY, task="queue_jobs.record").exists()


def test_queue_registered_task_runs_through_the_core_with_its_context(alias: str) -> None:
    job = schedule(queue_jobs.bound, args=[7], using=alias)
    worker = QueueWorker(using=alias, worker_id="w-1")
    assert worker.run_pass() == (1, 0)
    ((_uuid, worker_id, attempt, value),) = queue_jobs.calls
    assert (worker_id, attempt, value) == ("w-1", 1, 7)
    job.refresh_from_db(using=alias)
    assert job.state == JobState.DONE
    assert job.result == {"value": 7}


def test_queue_timeout_raises_in_the_job_and_is_recorded(alias: str) -> None:
    job = schedule(
        queue_jobs.sleep, args=[5], meta={"timeout": 0.2, "max_attempts": 1}, using=alias
    )
    assert _drain(alias) == (1, 1)
    job.refresh_from_db(using=alias)
    assert job.state == JobState.FAILED
    assert "TaskTimeoutError" in job.errors[0]["error"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["pg"])
def test_queue_two_workers_never_run_the_same_attempt(settings: Any) -> None:
    settings.CACHEWIRE_QUEUE = {"ALLOWED_MODULES": ["queue_jobs"], "CLAIM_BATCH": 3}
    queue_jobs.calls.clear()
    for number in range(300):
        schedule(queue_jobs.noop, args=[number], using="pg")
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def work() -> None:
        worker = QueueWorker(using="pg")
        start.wait()
        try:
            while jobs := worker.claim():
                with lock:
                    seen.extend((job.pk, job.attempts) for job in jobs)
                for job in jobs:
                    worker.run_job(job)
        finally:
            connections["pg"].close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 300
    assert len(set(seen)) == 300
    assert Job.objects.using("pg").filter(state=JobState.DONE).count() == 300


def test_queue_retry_and_cancel_of_the_admin_actions(alias: str) -> None:
    from cachewire_django.queue._api import cancel_jobs, retry_jobs

    failed = schedule(queue_jobs.fail, meta={"max_attempts": 1}, using=alias)
    ready = schedule(queue_jobs.record, args=["x"], priority=0, using=alias)
    worker = QueueWorker(using=alias)
    (claimed,) = worker.claim(limit=1)
    worker.run_job(claimed)
    jobs = Job.objects.using(alias)
    assert retry_jobs(jobs.all()) == 1
    failed.refresh_from_db(using=alias)
    assert (failed.state, failed.attempts, failed.max_attempts) == (JobState.READY, 1, 2)
    assert len(failed.errors) == 1
    assert cancel_jobs(jobs.filter(pk=ready.pk)) == 1
    assert _drain(alias) == (1, 1)  # the retried job ran (and failed) again; the cancelled did not
    assert queue_jobs.calls == ["boom", "boom"]
