"""The worker side: the function RQ jobs name, handing the body to the core's worker entry."""

from __future__ import annotations

from typing import Any

from rq import get_current_job
from rq.timeouts import JobTimeoutException

from cachewire import run_work
from cachewire.errors import PayloadError

__all__ = ["perform", "run_job"]


def perform(body: str, *, dispatcher_name: str) -> Any:
    """Run one job's body through `cachewire.run_work`, with the RQ worker's name and the job's
    attempt number for a bound task's context.

    RQ's job timeout surfaces as `TaskTimeoutError`; a body the core cannot read fails without
    retries. Other errors reach RQ, which retries them when the job was enqueued with a `Retry`.
    """
    job = get_current_job()
    worker_id = job.worker_name if job is not None else None
    attempt = (job.number_of_retries or 0) + 1 if job is not None else None
    try:
        return run_work(
            body,
            dispatcher_name=dispatcher_name,
            worker_id=worker_id,
            attempt=attempt,
            timeout_errors=(JobTimeoutException,),
        )
    except PayloadError:
        if job is not None:
            job.retries_left = 0  # retrying cannot make an unreadable body readable
        raise


def run_job(body: str) -> Any:
    """The default ``function_path`` of the ``rq`` dispatcher."""
    return perform(body, dispatcher_name="rq")
