"""The worker side: one Celery task that runs whatever the ``celery`` dispatcher sent.

It is a ``shared_task``, so ``app.autodiscover_tasks(["cachewire_celery"])`` (or
``include=["cachewire_celery.tasks"]``) registers it on the worker's app.

Retries use Celery's own task attributes, which ``task_annotations`` can change:
``max_retries`` (default 5), ``retry_backoff`` (first delay, seconds), ``retry_backoff_max``
and ``retry_jitter``.
"""

from __future__ import annotations

import json
import random
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

import cachewire
from cachewire.errors import PayloadError, TaskTimeoutError
from cachewire_celery.dispatcher import TASK_NAME

__all__ = ["run_work"]


def _kind(body: str | bytes) -> str:
    """``"rules"`` or ``"task"``; `PayloadError` for a body that is not JSON."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise PayloadError(f"a celery message body is not JSON: {exc}") from exc
    return "rules" if isinstance(data, dict) and "rule_ids" in data else "task"


def _run(body: str | bytes, kind: str) -> Any:
    """The core's worker entry: decode, route, apply the error policy, count."""
    if kind == "rules":
        cachewire.run_rules(body, dispatcher_name="celery")
        return None
    return cachewire.run_task(body, raise_errors=True)


def retry_countdown(task: Task, retries: int) -> float:
    """The delay before retry number ``retries + 1`` from the task's backoff attributes."""
    base = float(getattr(task, "retry_backoff", 1.0) or 1.0)
    ceiling = float(getattr(task, "retry_backoff_max", 600) or 600)
    delay: float = min(ceiling, base * 2**retries)
    if getattr(task, "retry_jitter", True):
        delay = random.uniform(delay / 2, delay)
    return delay


@shared_task(
    bind=True,
    name=TASK_NAME,
    max_retries=5,
    retry_backoff=1.0,
    retry_backoff_max=60.0,
    retry_jitter=True,
)
def run_work(self: Task, body: str) -> Any:
    """Run rule work or a cachewire task message.

    Rule work raises only when the resolved raise policy says so; it is then retried with
    backoff and, once the retries are spent, ends in Celery's failure handling. A task message
    returns the task's result; a soft time limit is reported as `TaskTimeoutError`. A malformed
    body is never retried.
    """
    kind = _kind(body)
    try:
        return _run(body, kind)
    except SoftTimeLimitExceeded as exc:
        raise TaskTimeoutError(
            f"celery task {self.request.id} ran past its soft time limit and was stopped"
        ) from exc
    except PayloadError:
        raise
    except Exception as exc:
        if kind != "rules":
            raise
        raise self.retry(exc=exc, countdown=retry_countdown(self, self.request.retries)) from exc
