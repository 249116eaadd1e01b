"""`QueueWorker`: claims due jobs under a lease, runs them through the core, records the outcome.

One worker runs one job at a time in its thread. It claims up to ``CLAIM_BATCH`` due jobs at
once: on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` (so workers never wait on each
other's rows), elsewhere with a conditional ``UPDATE`` keyed by a fresh claim token. A thread
renews the lease of what it holds; a job whose worker died is put back (or failed, when it has
no attempt left) once its lease has expired. Every outcome is written only while the claim that
ran the job still holds it, so a job is never marked done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
from django.db import DatabaseError, close_old_connections, connections, router, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from cachewire import run_work
from cachewire.errors import PayloadError, TaskTimeoutError
from cachewire.wire import bounded_repr, from_portable, from_portable_arguments, to_portable
from cachewire_django.queue import _settings
from cachewire_django.queue._api import CHANNEL, DJANGO_TASK_META, resolve_callable
from cachewire_django.queue.models import Job, JobState

__all__ = ["DISPATCHER_NAME", "QueueWorker"]

logger = logging.getLogger("cachewire.queue")

#: The dispatcher name run_work counts the queue's work under.
DISPATCHER_NAME = "db"
_TRACEBACK_LIMIT = 20_000
_MESSAGE_LIMIT = 2_000


class _ClaimLost(Exception):
    """The job's claim passed to another worker while this one ran it."""


#: Called with (job, deadline on the monotonic clock) when a job with a timeout starts, and
#: with (job, None) when it ends: how a supervising process learns when to kill this one.
TimeoutReporter = Callable[[Job, float | None], None]


class QueueWorker:
    """Runs the due jobs of some queues of one database.

    ``queues`` None means every queue. ``worker_id`` names this worker in the job rows and in
    bound tasks' context. Use `run_pass` for one pass (``flush_queue``) or `run` for a loop.
    """

    def __init__(
        self,
        *,
        using: str | None = None,
        queues: Sequence[str] | None = None,
        worker_id: str | None = None,
        reporter: TimeoutReporter | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.using = using or router.db_for_write(Job)
        self.queues = list(queues) if queues else None
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.reporter = reporter
        #: a supervised worker stops when its supervisor is gone
        self.parent_pid = parent_pid
        self.settings = _settings.current()
        self.stopping = threading.Event()
        self.executed = 0
        self.failed = 0
        self._held: set[uuid.UUID] = set()
        self._held_lock = threading.Lock()
        self._next_reap = 0.0
        # Successful runs whose "done" is written in one statement per claim, soon after
        # (PostgreSQL: a commit per job would cost more than the job).
        self._pending: list[Job] = []
        self._pending_lock = threading.Lock()
        self._defer_completions = connections[self.using].vendor == "postgresql"
        self._listening: Any = None

    # ------------------------------------------------------------------ claims

    def _jobs(self) -> QuerySet[Job]:
        jobs = Job.objects.using(self.using)
        if self.queues is not None:
            jobs = jobs.filter(queue__in=self.queues)
        return jobs

    def _due(self, now: dt.datetime, due_before: dt.datetime | None) -> QuerySet[Job]:
        cutoff = due_before or now
        due = (
            self._jobs()
            .filter(state=JobState.READY)
            .filter(Q(run_after__isnull=True) | Q(run_after__lte=cutoff))
        )
        if due_before is not None:
            due = due.filter(created_at__lte=due_before)
        return due.order_by("-priority", F("run_after").asc(nulls_last=True), "id")

    def claim(
        self, limit: int | None = None, *, due_before: dt.datetime | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs in queue order; they are RUNNING under a new token and
        a lease. ``due_before`` restricts the claim to jobs due and created by then."""
        limit = limit or self.settings.claim_batch
        token = uuid.uuid4()
        now = timezone.now()
        claimed = {
            "state": JobState.RUNNING,
            "claim": token,
            "worker": self.worker_id[:255],
            "lease_until": now + dt.timedelta(seconds=self.settings.lease_seconds),
            "attempts": F("attempts") + 1,
            "started_at": now,
        }
        jobs = self._take(token, claimed, now, limit, due_before)
        if jobs:
            with self._held_lock:
                self._held.add(token)
        return jobs

    def _take(
        self,
        token: uuid.UUID,
        claimed: dict[str, Any],
        now: dt.datetime,
        limit: int,
        due_before: dt.datetime | None,
    ) -> list[Job]:
        if connections[self.using].features.has_select_for_update_skip_locked:
            with transaction.atomic(using=self.using):
                due = self._due(now, due_before).select_for_update(skip_locked=True)
                jobs = list(due[:limit])
                if jobs:
                    Job.objects.using(self.using).filter(pk__in=[j.pk for j in jobs]).update(
                        **claimed
                    )
            for job in jobs:
                job.state, job.claim, job.worker = JobState.RUNNING, token, claimed["worker"]
                job.lease_until, job.started_at = claimed["lease_until"], now
                job.attempts += 1
            return jobs
        # No row locks (SQLite): the conditional UPDATE decides; read back what it took.
        ids = list(self._due(now, due_before).values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        taken = (
            Job.objects.using(self.using).filter(pk__in=ids, state=JobState.READY).update(**claimed)
        )
        if not taken:
            return []
        return list(
            Job.objects.using(self.using)
            .filter(claim=token, state=JobState.RUNNING)
            .order_by("-priority", F("run_after").asc(nulls_last=True), "id")
        )

    def _forget(self, token: uuid.UUID | None) -> None:
        with self._held_lock:
            self._held.discard(token)

    def renew_leases(self) -> int:
        """Extend the lease of every claim this worker holds; returns the rows renewed."""
        with self._held_lock:
            tokens = list(self._held)
        if not tokens:
            return 0
        until = timezone.now() + dt.timedelta(seconds=self.settings.lease_seconds)
        return int(
            Job.objects.using(self.using)
            .filter(claim__in=tokens, state=JobState.RUNNING)
            .update(lease_until=until)
        )

    def release(self, jobs: Sequence[Job]) -> int:
        """Give back claimed jobs that have not started (a graceful stop); returns how many."""
        if not jobs:
            return 0
        released = 0
        for token in {job.claim for job in jobs}:
            released += (
                Job.objects.using(self.using)
                .filter(
                    pk__in=[j.pk for j in jobs if j.claim == token],
                    claim=token,
                    state=JobState.RUNNING,
                )
                .update(
                    state=JobState.READY,
                    claim=None,
                    lease_until=None,
                    worker="",
                    attempts=F("attempts") - 1,
                )
            )
            self._forget(token)
        return released

    def reap(self, limit: int = 100) -> int:
        """Put back (or fail, when no attempt is left) running jobs whose lease has expired:
        their worker died. Returns how many were handled."""
        now = timezone.now()
        expired = self._jobs().filter(state=JobState.RUNNING, lease_until__lt=now)
        handled = 0
        with transaction.atomic(using=self.using):
            if connections[self.using].features.has_select_for_update_skip_locked:
                expired = expired.select_for_update(skip_locked=True)
            for job in list(expired.order_by("id")[:limit]):
                entry = _error_entry(job.attempts, "worker lost: its lease expired", "")
                update: dict[str, Any] = {
                    "errors": [*job.errors, entry],
                    "claim": None,
                    "lease_until": None,
                }
                if job.attempts >= job.max_attempts:
                    update.update(state=JobState.FAILED, finished_at=now)
                else:
                    update.update(state=JobState.READY, worker="")
                handled += (
                    Job.objects.using(self.using)
                    .filter(pk=job.pk, claim=job.claim, state=JobState.RUNNING)
                    .update(**update)
                )
        if handled:
            logger.warning("cachewire queue: %d job(s) of lost workers put back or failed", handled)
        return handled

    # ------------------------------------------------------------------ running

    def run_job(self, job: Job, *, defer_completion: bool = False) -> bool:
        """Run one claimed job and record its outcome; True when it succeeded.

        With ``defer_completion`` a success without a result is marked done by the next
        `flush_completions` (run within 50 ms by the lease thread, and at the end of a batch).
        """
        django_task = is_django_task(job)
        try:
            if job.atomic:
                with transaction.atomic(using=self.using):
                    result = self._execute(job)
                    if not self._complete(job, result):
                        raise _ClaimLost
                done = True
            else:
                result = self._execute(job)
                # A Django task's task_finished follows the write of its outcome: not deferred.
                if defer_completion and result is None and not django_task:
                    with self._pending_lock:
                        self._pending.append(job)
                    done = False
                else:
                    done = self._complete(job, result)
            if done and django_task:
                _announce_finished(job)
        except _ClaimLost:
            logger.warning(
                "cachewire queue: job %s lost its claim; its run was rolled back", job.pk
            )
            return False
        except Exception as exc:
            self._fail(job, exc)
            return False
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: record, then let it end us
            self._fail(job, exc)
            raise
        finally:
            self.executed += 1
        return True

    def _execute(self, job: Job) -> Any:
        with self._time_limit(job):
            if job.body is not None:
                return run_work(
                    job.body,
                    dispatcher_name=DISPATCHER_NAME,
                    worker_id=self.worker_id,
                    attempt=job.attempts,
                )
            if is_django_task(job):
                from cachewire_django.queue.backend import run_django_task

                return run_django_task(job)
            function = resolve_callable(job.task)
            args = [from_portable(value, where=f"job {job.pk} argument") for value in job.args]
            kwargs = from_portable_arguments(job.kwargs, where=f"job {job.pk} argument")
            result = function(*args, **kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_within(result, job.timeout))
            return result

    @contextlib.contextmanager
    def _time_limit(self, job: Job) -> Iterator[None]:
        """Raise `TaskTimeoutError` in this thread once ``job.timeout`` has passed (SIGALRM, in
        the main thread only); tell the supervisor when to kill this process instead."""
        timeout = job.timeout
        armed = bool(timeout) and threading.current_thread() is threading.main_thread()
        if self.reporter is not None and timeout:
            self.reporter(job, time.monotonic() + timeout)
        previous: Any = None
        if armed:

            def expire(signum: int, frame: Any) -> None:
                raise TaskTimeoutError(
                    f"job {job.pk} ({job.task}) ran longer than its timeout of {timeout}s"
                )

            previous = signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        try:
            yield
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            if self.reporter is not None and timeout:
                self.reporter(job, None)

    def _complete(self, job: Job, result: Any) -> bool:
        """Mark ``job`` done with its result (``job`` then holds what was written), while its
        claim holds."""
        stored = _portable_result(job, result)
        outcome = {
            "state": JobState.DONE,
            "finished_at": timezone.now(),
            "lease_until": None,
            "result": stored,
        }
        done = (
            Job.objects.using(self.using)
            .filter(pk=job.pk, claim=job.claim, state=JobState.RUNNING)
            .update(**outcome)
        )
        if done:
            for name, value in outcome.items():
                setattr(job, name, value)
        else:
            logger.warning(
                "cachewire queue: job %s finished after its claim was lost; not marked done",
                job.pk,
            )
        return bool(done)

    def flush_completions(self) -> int:
        """Mark done the deferred successes, one statement per claim; returns how many."""
        with self._pending_lock:
            jobs, self._pending = self._pending, []
        marked = 0
        for token in {job.claim for job in jobs}:
            ids = [job.pk for job in jobs if job.claim == token]
            done = (
                Job.objects.using(self.using)
                .filter(pk__in=ids, claim=token, state=JobState.RUNNING)
                .update(state=JobState.DONE, finished_at=timezone.now(), lease_until=None)
            )
            if done < len(ids):
                logger.warning(
                    "cachewire queue: %d job(s) finished after their claim was lost; not marked "
                    "done",
                    len(ids) - done,
                )
            marked += done
        return marked

    def _fail(self, job: Job, exc: BaseException) -> None:
        self.failed += 1
        if isinstance(exc, TaskTimeoutError):
            # The alarm may have fired inside a query: start from a fresh connection.
            connections[self.using].close()
        text = f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:_MESSAGE_LIMIT]}"
        trace = "".join(traceback.format_exception(exc))[-_TRACEBACK_LIMIT:]
        logger.error(
            "cachewire queue: job %s (%s) attempt %s failed: %s",
            job.pk,
            job.task,
            job.attempts,
            text,
        )
        record_failure(self.using, job, text, trace, retryable=not isinstance(exc, PayloadError))

    # ------------------------------------------------------------------ loops

    def _run_batch(self, jobs: Sequence[Job], *, stop_on_error: bool = False) -> int:
        """Run a claimed batch in order; on a stop (or a failure with ``stop_on_error``) give
        back what has not started. Returns how many failed."""
        failed = 0
        try:
            for index, job in enumerate(jobs):
                if not self.run_job(job, defer_completion=self._defer_completions):
                    failed += 1
                if self.stopping.is_set() or (failed and stop_on_error):
                    self.release(jobs[index + 1 :])
                    break
        finally:
            self.flush_completions()
            if jobs:
                self._forget(jobs[0].claim)
        return failed

    def run_pass(self, *, stop_on_error: bool = False) -> tuple[int, int]:
        """Run the jobs due now, once each, in queue order; returns (run, failed).

        With ``stop_on_error`` the pass ends at the first failure (the rest stay queued)."""
        start = timezone.now()
        before = self.executed
        failed = 0
        with self._heartbeat():
            while not self.stopping.is_set():
                jobs = self.claim(due_before=start)
                if not jobs:
                    break
                failed += self._run_batch(jobs, stop_on_error=stop_on_error)
                if failed and stop_on_error:
                    break
        return self.executed - before, failed

    def run(self, *, max_jobs: int | None = None) -> None:
        """Run due jobs until `stopping` is set (or about ``max_jobs`` ran), waiting for work
        when there is none: LISTEN/NOTIFY on PostgreSQL, polling elsewhere."""
        with self._heartbeat():
            while not self.stopping.is_set():
                if max_jobs is not None and self.executed >= max_jobs:
                    break
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    logger.error("cachewire queue: the supervisor is gone; stopping")
                    break
                try:
                    self._maybe_reap()
                    jobs = self.claim()
                except DatabaseError:
                    logger.exception("cachewire queue: cannot claim jobs; retrying")
                    connections[self.using].close()
                    self.stopping.wait(self.settings.poll_seconds)
                    continue
                if jobs:
                    self._run_batch(jobs)
                else:
                    self.wait_for_work(self.settings.poll_seconds)

    @contextlib.contextmanager
    def _heartbeat(self) -> Iterator[None]:
        done = threading.Event()
        thread = threading.Thread(
            target=self._renew_until, args=(done,), name="cachewire-lease", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _maybe_reap(self) -> None:
        now = time.monotonic()
        if now >= self._next_reap:
            self._next_reap = now + max(self.settings.lease_seconds / 4, 0.05)
            self.reap()

    def _renew_until(self, done: threading.Event) -> None:
        period = self.settings.lease_seconds / 3
        renew_at = time.monotonic() + period
        try:
            while not done.wait(0.05 if self._defer_completions else period):
                try:
                    if self._pending:
                        self.flush_completions()
                    if time.monotonic() >= renew_at:
                        renew_at = time.monotonic() + period
                        self.renew_leases()
                except Exception:
                    logger.exception("cachewire queue: could not renew leases")
                    close_old_connections()
        finally:
            connections.close_all()

    def wait_for_work(self, timeout: float) -> None:
        """Return when a job may be due: a notification (PostgreSQL) or ``timeout`` seconds."""
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            self.stopping.wait(timeout)
            return
        try:
            connection.ensure_connection()
            raw = connection.connection
            if self._listening is not raw:
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
                self._listening = raw
            # In slices, so a stop request is seen within half a second.
            deadline = time.monotonic() + timeout
            while not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or any(
                    True for _ in raw.notifies(timeout=min(left, 0.5), stop_after=1)
                ):
                    break
        except Exception:
            logger.exception("cachewire queue: LISTEN failed; polling")
            self._listening = None
            connection.close()
            self.stopping.wait(timeout)


def is_django_task(job: Job) -> bool:
    """Whether ``job`` holds a task of Django's task framework (written by its backend)."""
    return bool(job.meta.get(DJANGO_TASK_META))


def _announce_finished(job: Job) -> None:
    from cachewire_django.queue.backend import announce_finished

    announce_finished(job)


def record_failure(using: str, job: Job, error: str, trace: str, *, retryable: bool = True) -> bool:
    """Record a failed attempt of a claimed job: back to READY after the retry policy's delay
    while attempts remain, else FAILED (then a Django task's ``task_finished`` is sent). Written
    only while ``job.claim`` holds the job; ``job`` then holds what was written."""
    policy = attrs.evolve(_settings.current().retry, max_attempts=max(job.max_attempts, 1))
    now = timezone.now()
    update: dict[str, Any] = {
        "errors": [*job.errors, _error_entry(job.attempts, error, trace)],
        "claim": None,
        "lease_until": None,
    }
    if retryable and policy.should_retry(job.attempts):
        delay = policy.delay_for(job.attempts)
        update.update(state=JobState.READY, worker="", run_after=now + dt.timedelta(seconds=delay))
    else:
        update.update(state=JobState.FAILED, finished_at=now)
    written = bool(
        Job.objects.using(using)
        .filter(pk=job.pk, claim=job.claim, state=JobState.RUNNING)
        .update(**update)
    )
    if written:
        for name, value in update.items():
            setattr(job, name, value)
        if job.state == JobState.FAILED and is_django_task(job):
            _announce_finished(job)
    return written


def _error_entry(attempt: int, error: str, trace: str) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": timezone.now().isoformat(),
        "error": error,
        "traceback": trace,
    }


def _portable_result(job: Job, result: Any) -> Any:
    if result is None:
        return None
    try:
        return to_portable(result, where=f"job {job.pk} result")
    except Exception:
        logger.warning("cachewire queue: job %s returned a value that cannot be stored", job.pk)
        return {"unstored": bounded_repr(result)}


async def _within(awaitable: Any, timeout: float | None) -> Any:
    if not timeout:
        return await awaitable
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError as exc:
        raise TaskTimeoutError(f"ran longer than its timeout of {timeout}s") from exc
