"""The one worker entry every runtime calls with a raw message body: `run_work` / `arun_work`.

They decode the envelope, route it (rule work or a task), apply the error policy and count, so no
adapter needs to look inside a message.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from cachewire.dispatch import dispatch_stats
from cachewire.errors import PayloadError
from cachewire.rules import arun_rules, run_rules
from cachewire.tasks import TaskMessage, arun_task, run_task
from cachewire.wire import Envelope, decode_envelope, decode_rule_work

__all__ = ["arun_work", "run_work"]

logger = logging.getLogger("cachewire.worker")


def _open(body: str | bytes | bytearray, dispatcher_name: str) -> Envelope:
    """The envelope of ``body``, or `PayloadError` after logging and counting the rejection."""
    try:
        return decode_envelope(body)
    except PayloadError as exc:
        dispatch_stats.bump("rejected_messages")
        logger.error("worker of %r rejected a message: %s", dispatcher_name, exc)
        raise


def _task_message(envelope: Envelope, dispatcher_name: str, attempt: int | None) -> TaskMessage:
    try:
        message = TaskMessage.from_json(envelope)
    except PayloadError as exc:
        dispatch_stats.bump("rejected_messages")
        logger.error("worker of %r rejected a task message: %s", dispatcher_name, exc)
        raise
    if attempt is not None and attempt != message.attempt:
        message = attrs.evolve(message, attempt=attempt)
    return message


def _rule_work(envelope: Envelope, dispatcher_name: str) -> Any:
    try:
        return decode_rule_work(envelope)
    except PayloadError as exc:
        dispatch_stats.bump("rejected_messages")
        logger.error("worker of %r rejected rule work: %s", dispatcher_name, exc)
        raise


def run_work(
    body: str | bytes | bytearray,
    *,
    dispatcher_name: str,
    worker_id: str | None = None,
    attempt: int | None = None,
    timeout_errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Run one message of ``dispatcher_name``'s runtime in this thread.

    Rule work returns None; a rule error (or an unknown rule id) is logged and counted and raised
    only when the error policy says so, so the runtime can retry or dead-letter it. A task returns
    its result and raises what it raised (`TaskTimeoutError` for a timeout), so the runtime
    records the failure. A body that is not a message, or of a newer major version, is logged,
    counted and raised as `PayloadError`: retrying it cannot help. ``worker_id`` and ``attempt``
    are the runtime's, for a bound task's context; ``timeout_errors`` are the runtime's own
    time-limit exceptions (Celery's ``SoftTimeLimitExceeded``, RQ's ``JobTimeoutException``),
    raised and counted as `TaskTimeoutError`.
    """
    envelope = _open(body, dispatcher_name)
    if envelope.kind == "task":
        message = _task_message(envelope, dispatcher_name, attempt)
        return run_task(
            message, raise_errors=True, worker_id=worker_id, timeout_errors=timeout_errors
        )
    run_rules(_rule_work(envelope, dispatcher_name), dispatcher_name=dispatcher_name)
    return None


async def arun_work(
    body: str | bytes | bytearray,
    *,
    dispatcher_name: str,
    worker_id: str | None = None,
    attempt: int | None = None,
    timeout_errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Async twin of `run_work`, for runtimes whose workers run an event loop."""
    envelope = _open(body, dispatcher_name)
    if envelope.kind == "task":
        message = _task_message(envelope, dispatcher_name, attempt)
        return await arun_task(
            message, raise_errors=True, worker_id=worker_id, timeout_errors=timeout_errors
        )
    await arun_rules(_rule_work(envelope, dispatcher_name), dispatcher_name=dispatcher_name)
    return None
