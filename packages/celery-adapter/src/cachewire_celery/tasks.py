"""The worker side: one Celery task that runs whatever the ``celery`` dispatcher sent.

It is a ``shared_task``, so ``app.autodiscover_tasks(["cachewire_celery"])`` (or
``include=["cachewire_celery.tasks"]``) registers it on the worker's app.

Retries use Celery's own task attributes, which ``task_annotations`` can change:
``max_retries`` (rule work; default 5), ``retry_backoff`` (first delay, seconds),
``retry_backoff_max`` and ``retry_jitter``; the core's `RetryPolicy` does the arithmetic.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

import cachewire
from cachewire import RetryPolicy, TaskMessage
from cachewire.errors import PayloadError, TaskTimeoutError
from cachewire.wire import decode_envelope
from cachewire_celery.dispatcher import TASK_NAME

__all__ = ["RETRIES_LABEL", "retry_policy", "run_work"]

logger = logging.getLogger("cachewire_celery")

#: A cachewire task's label naming how many times Celery retries it after a failure (default 0).
RETRIES_LABEL = "retries"


def retry_policy(task: Task, retries: int) -> RetryPolicy:
    """``retries`` retries with the backoff attributes of the Celery ``task``."""
    return RetryPolicy(
        max_attempts=retries + 1,
        base_delay=float(task.retry_backoff),
        max_delay=float(task.retry_backoff_max),
        jitter=bool(task.retry_jitter),
    )


def _retries_for(task: Task, body: str | bytes) -> int:
    """How many retries a failure of ``body`` gets: the task's ``max_retries`` for rule work
    (which raises only under the raise policy), the ``retries`` label for a task message."""
    envelope = decode_envelope(body)
    if envelope.kind != "task":
        return int(task.max_retries or 0)
    retries = TaskMessage.from_json(envelope).labels.get(RETRIES_LABEL, 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        logger.warning(
            "label %s=%r is not a number of retries; not retrying", RETRIES_LABEL, retries
        )
        return 0
    return retries


@shared_task(
    bind=True,
    name=TASK_NAME,
    max_retries=5,
    retry_backoff=1.0,
    retry_backoff_max=60.0,
    retry_jitter=True,
)
def run_work(self: Task, body: str) -> Any:
    """Run rule work or a cachewire task message through `cachewire.run_work`.

    Rule work raises only when the resolved raise policy says so; it is then retried with
    backoff and, once the retries are spent, ends in Celery's failure handling (a dead-letter
    setup applies). A task message returns the task's result; a soft time limit is reported as
    `TaskTimeoutError`. A malformed body is never retried.
    """
    request = self.request
    attempt = (request.retries or 0) + 1
    try:
        return cachewire.run_work(
            body,
            dispatcher_name="celery",
            worker_id=f"{request.hostname or 'celery'}:{os.getpid()}",
            attempt=attempt,
        )
    except SoftTimeLimitExceeded as exc:
        raise TaskTimeoutError(
            f"celery task {request.id} ran past its soft time limit and was stopped"
        ) from exc
    except (PayloadError, TaskTimeoutError):
        raise
    except Exception as exc:
        policy = retry_policy(self, _retries_for(self, body))
        if not policy.should_retry(attempt):
            raise
        raise self.retry(
            exc=exc, countdown=policy.delay_for(attempt), max_retries=policy.max_attempts - 1
        ) from exc
