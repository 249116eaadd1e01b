"""The worker side: the function RQ jobs name, handing the body to the core's worker entry."""

from __future__ import annotations

from typing import Any

from rq import get_current_job
from rq.timeouts import JobTimeoutException

from cachewire.errors import PayloadError, TaskTimeoutError
from cachewire_rq._compat import run_work

__all__ = ["perform", "run_job"]


def perform(body: str, *, dispatcher_name: str) -> Any:
    """Run one job's body through the core.

    RQ's job timeout surfaces as `TaskTimeoutError`; a body the core cannot read is not retried.
    Other errors reach RQ, which retries them when the job was enqueued with a `Retry`.
    """
    try:
        return run_work(body, dispatcher_name=dispatcher_name)
    except JobTimeoutException as exc:
        raise TaskTimeoutError(f"RQ stopped the job at its timeout: {exc}") from exc
    except PayloadError:
        job = get_current_job()
        if job is not None:
            job.retries_left = 0  # retrying cannot make an unreadable body readable
        raise


def run_job(body: str) -> Any:
    """The default ``function_path`` of the ``rq`` dispatcher."""
    return perform(body, dispatcher_name="rq")
