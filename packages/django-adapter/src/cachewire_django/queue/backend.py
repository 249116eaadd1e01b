"""A backend of Django's task framework that puts tasks in the durable queue.

``TASKS = {"default": {"BACKEND": "cachewire_django.queue.backend.QueueBackend"}}``: ``@task``
functions and ``enqueue()`` from Django (``django.tasks`` on Django 6, the ``django-tasks``
backport on 5.2) become jobs, written in the caller's transaction and run by
``manage.py cachewire_worker`` with leases, retries and timeouts; ``get_result()`` reads the job
back as a ``TaskResult``. ``OPTIONS`` may hold ``DATABASE`` (the alias of the queue),
``MAX_ATTEMPTS`` and ``TIMEOUT`` (seconds) for the backend's tasks.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from cachewire.errors import ConfigurationError
from cachewire.wire import from_portable, from_portable_arguments
from cachewire_django.queue._api import enqueue
from cachewire_django.queue.models import Job, JobState

try:  # Django 6
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:  # Django 5.2 and the django-tasks backport
    from django_tasks import (
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import TaskResultDoesNotExist

__all__ = ["QueueBackend", "run_django_task"]

#: meta key naming the backend alias of a job that holds a Django task
META_KEY = "django_task_backend"

_STATUS = {
    JobState.READY: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.DONE: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}


class QueueBackend(BaseTaskBackend):
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
        self.database: str | None = self.options.get("DATABASE")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        job = enqueue(
            task=task.module_path,
            args=list(args),
            kwargs=dict(kwargs),
            queue=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
            max_attempts=self.options.get("MAX_ATTEMPTS"),
            timeout=self.options.get("TIMEOUT"),
            meta={META_KEY: self.alias},
            using=self.database,
        )
        return self._result(job, task)

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = Job.objects.using(self.database or "default").get(pk=int(result_id))
        except (ValueError, Job.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        if job.meta.get(META_KEY) != self.alias:
            raise TaskResultDoesNotExist(result_id)
        return self._result(job, _task_of(job))

    def _result(self, job: Job, task: Task) -> TaskResult:
        status = _STATUS[JobState(job.state)]
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
            errors=[
                TaskError(
                    exception_class_path=str(entry["error"]).split(":", 1)[0],
                    traceback=str(entry["traceback"]),
                )
                for entry in job.errors
            ],
            worker_ids=[job.worker] * job.attempts if job.worker else [],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", from_portable(job.result))
        return result


def _task_of(job: Job) -> Task:
    task = import_string(job.task)
    if not isinstance(task, Task):
        raise ConfigurationError(f"{job.task!r} is not a task of Django's task framework")
    return task


def run_django_task(job: Job) -> Any:
    """Run a job written by `QueueBackend` (what the queue's worker calls)."""
    task = _task_of(job)
    args = [from_portable(value) for value in job.args]
    kwargs = from_portable_arguments(job.kwargs, where="task argument")
    if task.takes_context:
        backend = task_backends[job.meta[META_KEY]]
        context = TaskContext(task_result=backend.get_result(str(job.pk)))
        return task.call(context, *args, **kwargs)
    return task.call(*args, **kwargs)
