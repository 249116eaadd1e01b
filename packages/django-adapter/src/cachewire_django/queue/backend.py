"""A backend of Django's task framework that puts tasks in the durable queue.

``TASKS = {"default": {"BACKEND": "cachewire_django.queue.backend.QueueBackend"}}``: ``@task``
functions and ``enqueue()`` from Django (``django.tasks`` on Django 6, the ``django-tasks``
backport on 5.2) become jobs, written in the caller's transaction and run by
``manage.py cachewire_worker`` with leases, retries and timeouts; ``get_result()`` reads the job
back as a ``TaskResult``.

The backend's task class, `QueueTask`, takes the queue's own options per task:
``@task(timeout=30, max_attempts=3, dedup_key="sitemap", atomic=True)`` and the same keywords on
``.using(...)``. ``OPTIONS`` may hold ``DATABASE`` (the alias of the queue), and
``MAX_ATTEMPTS`` and ``TIMEOUT`` (seconds) for the tasks that set none.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from django.utils.module_loading import import_string

from cachewire.errors import CachewireError, ConfigurationError
from cachewire.wire import from_portable, from_portable_arguments
from cachewire_django.queue._api import DJANGO_TASK_META, check_meta, enqueue
from cachewire_django.queue.models import Job, JobState

try:  # Django 6
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2 and the django-tasks backport
    from django_tasks import (
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

__all__ = [
    "InvalidTask",
    "JobCancelledError",
    "QueueBackend",
    "QueueTask",
    "announce_finished",
    "run_django_task",
]

logger = logging.getLogger("cachewire.queue")

#: Django's TaskResultStatus has no "cancelled": a cancelled job reads as FAILED, with a
#: `JobCancelledError` as its last error (see `QueueBackend._result`).
_STATUS = {
    JobState.READY: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.DONE: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}

#: the queue options a `QueueTask` carries (the `schedule()` meta keys of the same name)
TASK_OPTIONS = ("timeout", "max_attempts", "dedup_key", "atomic")


class JobCancelledError(CachewireError):
    """The job was cancelled (``deschedule()``, the admin) before it ran; reported by a
    cancelled job's ``TaskResult.errors``."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueueTask(Task):  # type: ignore[misc,unused-ignore]
    """A task of `QueueBackend`, with the queue's options: ``timeout`` (seconds, then the run
    is stopped), ``max_attempts``, ``dedup_key`` (while a job with the key is ready or running,
    ``enqueue()`` returns that job's result instead of adding one) and ``atomic`` (run the task
    and mark it done in one transaction). ``None`` leaves an option to the backend's
    ``OPTIONS`` and the queue's settings."""

    timeout: float | None = None
    max_attempts: int | None = None
    dedup_key: str | None = None
    atomic: bool = False

    def using(  # type: ignore[override,unused-ignore]
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: Any = None,
        backend: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        dedup_key: str | None = None,
        atomic: bool | None = None,
    ) -> QueueTask:
        """A copy with other defaults: Django's own keywords and the queue's options."""
        # Task.using by name: a slotted dataclass has no zero-argument super().
        changed = Task.using(
            self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend
        )
        options = {"timeout": timeout, "max_attempts": max_attempts, "dedup_key": dedup_key}
        changes: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
        if atomic is not None:
            changes["atomic"] = atomic
        return dataclasses.replace(changed, **changes) if changes else changed


def task_options(task: Task) -> dict[str, Any]:
    """The queue options of ``task`` that it sets (none for a plain Django ``Task``)."""
    options = {key: getattr(task, key, None) for key in TASK_OPTIONS}
    return {key: value for key, value in options.items() if value is not None}


class QueueBackend(BaseTaskBackend):
    task_class = QueueTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - {"DATABASE", "MAX_ATTEMPTS", "TIMEOUT"})
        if unknown:
            raise ConfigurationError(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {unknown}; known: "
                f"DATABASE, MAX_ATTEMPTS, TIMEOUT"
            )
        self.defaults = check_meta(
            {
                "max_attempts": self.options.get("MAX_ATTEMPTS"),
                "timeout": self.options.get("TIMEOUT"),
            },
            name=lambda key: f"TASKS[{alias!r}]['OPTIONS'][{key.upper()!r}]",
        )
        self.database: str | None = self.options.get("DATABASE")

    def validate_task(self, task: Task) -> None:
        """Django's checks, and the queue options of a `QueueTask`: `InvalidTask` names the
        task and the option that is wrong."""
        super().validate_task(task)
        where = getattr(task.func, "__qualname__", repr(task.func))
        try:
            check_meta(task_options(task), name=lambda key: f"task {where!r}: {key}")
        except ConfigurationError as exc:
            raise InvalidTask(str(exc)) from None

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        options = {key: value for key, value in self.defaults.items() if value is not None}
        options.update(task_options(task))
        job = enqueue(
            task=task.module_path,
            args=list(args),
            kwargs=dict(kwargs),
            queue=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
            max_attempts=options.get("max_attempts"),
            timeout=options.get("timeout"),
            dedup_key=options.get("dedup_key"),
            atomic=bool(options.get("atomic", False)),
            meta={DJANGO_TASK_META: self.alias},
            using=self.database,
        )
        result = self._result(job, task)
        if not job.deduplicated:
            task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = Job.objects.using(self.database or "default").get(pk=int(result_id))
        except (ValueError, Job.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        if job.meta.get(DJANGO_TASK_META) != self.alias:
            raise TaskResultDoesNotExist(result_id)
        return self._result(job, _task_of(job))

    def _result(self, job: Job, task: Task) -> TaskResult:
        state = JobState(job.state)
        status = _STATUS[state]
        errors = [
            TaskError(
                exception_class_path=str(entry["error"]).split(":", 1)[0],
                traceback=str(entry["traceback"]),
            )
            for entry in job.errors
        ]
        if state == JobState.CANCELLED:
            errors.append(_cancelled_error(job))
        result = TaskResult(
            task=task,
            id=str(job.pk),
            status=status,
            enqueued_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            last_attempted_at=job.started_at,
            args=[from_portable(value) for value in job.args],
            kwargs=from_portable_arguments(job.kwargs, where="task argument"),
            backend=self.alias,
            errors=errors,
            worker_ids=[job.worker] * job.attempts if job.worker else [],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", from_portable(job.result))
        return result


def _cancelled_error(job: Job) -> TaskError:
    path = f"{JobCancelledError.__module__}.{JobCancelledError.__qualname__}"
    when = job.finished_at.isoformat() if job.finished_at else "an unknown time"
    return TaskError(
        exception_class_path=path,
        traceback=f"{path}: job {job.pk} was cancelled at {when}, before it ran "
        f"(after {job.attempts} attempt(s)); it will not run unless it is retried",
    )


def _task_of(job: Job) -> Task:
    task = import_string(job.task)
    if not isinstance(task, Task):
        raise ConfigurationError(f"{job.task!r} is not a task of Django's task framework")
    return task


def run_django_task(job: Job) -> Any:
    """Run a job written by `QueueBackend` (what the queue's worker calls), after sending
    Django's ``task_started`` with the claimed job's result (RUNNING)."""
    task = _task_of(job)
    backend = task_backends[job.meta[DJANGO_TASK_META]]
    args = [from_portable(value) for value in job.args]
    kwargs = from_portable_arguments(job.kwargs, where="task argument")
    started = backend._result(job, task)
    _send(task_started, backend, started)
    if task.takes_context:
        return task.call(TaskContext(task_result=started), *args, **kwargs)
    return task.call(*args, **kwargs)


def announce_finished(job: Job) -> None:
    """Send Django's ``task_finished`` for a job of `QueueBackend` whose outcome was just
    written (``job`` holds it): done, or failed with no attempt left. A failed attempt that
    will be retried sends nothing; the job is not finished."""
    try:
        backend = task_backends[job.meta[DJANGO_TASK_META]]
        result = backend._result(job, _task_of(job))
    except Exception:
        logger.exception(
            "cachewire queue: no task result for job %s; task_finished not sent", job.pk
        )
        return
    _send(task_finished, backend, result)


def _send(signal: Any, backend: BaseTaskBackend, result: TaskResult) -> None:
    # A receiver that raises must not fail the job or stop the worker: logged, like Django's
    # request signals' robust receivers.
    for receiver, response in signal.send_robust(type(backend), task_result=result):
        if isinstance(response, Exception):
            logger.error(
                "cachewire queue: a receiver of %s (%r) raised for job %s: %r",
                "task_started" if signal is task_started else "task_finished",
                receiver,
                result.id,
                response,
                exc_info=response,
            )
