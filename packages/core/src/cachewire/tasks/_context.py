"""Value objects shared by the submit and run sides."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Literal

import attrs

from cachewire.tasks._message import TaskMessage

__all__ = [
    "SubmitResult",
    "TaskContext",
    "count",
    "current_worker_id",
    "reset_task_stats",
    "task_stats",
]


def current_worker_id() -> str:
    """This worker's identity: ``host:pid:thread``, unique across the processes of a cluster."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@attrs.frozen
class SubmitResult:
    """What a submission did: ``accepted`` (handed to the dispatcher), ``queued`` (held until the
    running duplicate finishes) or ``discarded`` (dropped as a duplicate)."""

    outcome: Literal["accepted", "queued", "discarded"]
    uuid: str
    message: TaskMessage = attrs.field(repr=False)


@attrs.frozen
class TaskContext:
    """Passed first to a ``bind=True`` task and to middlewares' execute hooks."""

    uuid: str
    worker_id: str
    attempt: int
    queue: str | None
    task_name: str
    labels: dict[str, Any] = attrs.field(factory=dict)
    message: TaskMessage | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def for_message(cls, message: TaskMessage, *, worker_id: str | None = None) -> TaskContext:
        """The context of running ``message`` in this thread; ``worker_id`` is the runtime's
        name for this worker (default: ``host:pid:thread``)."""
        return cls(
            uuid=message.uuid,
            worker_id=worker_id or current_worker_id(),
            attempt=message.attempt,
            queue=message.queue,
            task_name=message.name,
            labels=dict(message.labels),
            message=message,
        )


_counter_lock = threading.Lock()
_counters: dict[str, int] = {}


def count(event: str, n: int = 1) -> None:
    """Add to a process-wide task counter (see `task_stats`)."""
    with _counter_lock:
        _counters[event] = _counters.get(event, 0) + n


def task_stats() -> dict[str, int]:
    """Process-wide counters: accepted, queued, discarded, succeeded, failed, timed_out, unknown."""
    with _counter_lock:
        return dict(_counters)


def reset_task_stats() -> None:
    """Zero the counters (for tests)."""
    with _counter_lock:
        _counters.clear()
