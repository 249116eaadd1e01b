"""Functions the queue tests schedule (allowed through ``CACHEWIRE_QUEUE['ALLOWED_MODULES']``)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from django.db import connections

import cachewire

#: What in-process runs recorded, in order.
calls: list[Any] = []


def record(value: Any) -> Any:
    calls.append(value)
    return value


def fail(message: str = "boom") -> None:
    calls.append(message)
    raise RuntimeError(message)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def noop(*args: Any) -> None:
    return None


def mark(table: str, number: int, using: str = "default") -> None:
    """The fault test's side effect: one row per run that committed."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (job, pid) VALUES (%s, %s)", [number, os.getpid()])


def schedule_then_fail(using: str) -> None:
    from cachewire_django.queue import schedule

    schedule(record, args=["inner"], using=using)
    raise RuntimeError("after scheduling")


@cachewire.task(name="queue_jobs.bound", bind=True)
def bound(ctx: cachewire.TaskContext, value: int) -> dict[str, Any]:
    calls.append((ctx.uuid, ctx.worker_id, ctx.attempt, value))
    return {"value": value}


@cachewire.task(name="queue_jobs.slow_task")
def slow_task(seconds: float) -> None:
    time.sleep(seconds)


def ignore_alarm_and_sleep(seconds: float) -> None:
    """A job that defeats the cooperative timeout: only killing its process stops it."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(seconds)
