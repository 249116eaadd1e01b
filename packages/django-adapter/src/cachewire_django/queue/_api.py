"""`schedule`, `deschedule` and `health`: the queue as the application sees it."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import IntegrityError, router, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from cachewire.errors import ConfigurationError, TaskError
from cachewire.tasks import Task, default_registry
from cachewire.wire import canonical_arguments
from cachewire_django.queue import _settings
from cachewire_django.queue.models import Job, JobState

__all__ = ["META_KEYS", "deschedule", "health", "schedule", "task_name"]

#: What ``meta`` may hold.
META_KEYS = ("max_attempts", "timeout", "queue", "dedup_key", "atomic")


def task_name(function: Callable[..., Any] | Task[..., Any] | str) -> str:
    """The name a worker runs ``function`` by; `ConfigurationError` when a worker would refuse
    it (not a registered task, nor a callable under ``CACHEWIRE_QUEUE["ALLOWED_MODULES"]``)."""
    if isinstance(function, Task):
        return function.name
    if isinstance(function, str):
        name = function
    elif callable(function) and hasattr(function, "__module__"):
        registered = getattr(function, "name", None)
        if isinstance(registered, str) and default_registry.find(registered) is not None:
            return registered
        name = f"{function.__module__}.{getattr(function, '__qualname__', '')}"
    else:
        raise ConfigurationError(f"schedule() needs a task, a callable or a dotted path, not {function!r}")
    if default_registry.find(name) is not None:
        return name
    if _allowed(name):
        return name
    raise ConfigurationError(
        f"{name!r} is neither a registered cachewire task nor under CACHEWIRE_QUEUE"
        f"['ALLOWED_MODULES'] ({', '.join(_settings.current().allowed_modules) or 'empty'}); "
        f"decorate it with @cachewire.task or allow its module: workers run nothing else"
    )


def _allowed(name: str) -> bool:
    return any(
        name == prefix or name.startswith(prefix.rstrip(".") + ".")
        for prefix in _settings.current().allowed_modules
    )


def resolve_callable(name: str) -> Callable[..., Any]:
    """The function a worker runs for ``name``: a registered task, or an allowed callable."""
    found = default_registry.find(name)
    if found is not None:
        return found.func  # type: ignore[no-any-return]
    if not _allowed(name):
        raise ConfigurationError(f"{name!r} is not a registered task nor an allowed callable")
    module_name, _, attribute = name.rpartition(".")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


def arguments_hash(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a call's arguments; `TaskError` for a value that is not
    JSON."""
    return hashlib.sha256(canonical_arguments(args, kwargs).encode()).hexdigest()


def _check_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ConfigurationError(f"schedule(meta=...) has unknown key(s) {unknown}; known: {list(META_KEYS)}")
    checked = dict(meta)
    attempts = checked.get("max_attempts")
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1):
        raise ConfigurationError(f"meta['max_attempts']={attempts!r} must be an int >= 1")
    timeout = checked.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0):
        raise ConfigurationError(f"meta['timeout']={timeout!r} must be seconds > 0")
    for key in ("queue", "dedup_key"):
        value = checked.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"meta[{key!r}]={value!r} must be a non-empty string")
    if not isinstance(checked.get("atomic", False), bool):
        raise ConfigurationError("meta['atomic'] must be True or False")
    return checked


def schedule(
    function: Callable[..., Any] | Task[..., Any] | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    run_after: dt.datetime | None = None,
    meta: Mapping[str, Any] | None = None,
    priority: int = 5,
    *,
    using: str | None = None,
) -> Job:
    """Queue a call of ``function`` and return its `Job`.

    The row is written in the caller's transaction: if it rolls back, there is no job. ``meta``
    may set ``max_attempts``, ``timeout`` (seconds), ``queue``, ``dedup_key`` (while a job with
    that key is ready or running, scheduling another returns that job) and ``atomic`` (run the job
    and mark it done in one transaction). Raises `ConfigurationError` for a function workers would
    refuse or a bad option, and `TaskError` for arguments that are not JSON.
    """
    name = task_name(function)
    args, kwargs = list(args or ()), dict(kwargs or {})
    digest = arguments_hash(args, kwargs)
    options = _check_meta(meta or {})
    if isinstance(priority, bool) or not isinstance(priority, int) or not -32768 <= priority <= 32767:
        raise ConfigurationError(f"schedule(priority={priority!r}) must be a small int")
    if run_after is not None and timezone.is_naive(run_after):
        raise ConfigurationError("schedule(run_after=...) must be an aware datetime")
    alias = using or router.db_for_write(Job)
    job = Job(
        task=name,
        args=args,
        kwargs=kwargs,
        arguments_hash=digest,
        queue=options.get("queue") or "default",
        priority=priority,
        run_after=run_after,
        max_attempts=options.get("max_attempts") or _settings.current().retry.max_attempts,
        timeout=options.get("timeout"),
        dedup_key=options.get("dedup_key"),
        atomic=bool(options.get("atomic", False)),
        meta=dict(options),
    )
    if job.dedup_key is None:
        job.save(using=alias)
    else:
        try:
            with transaction.atomic(using=alias):
                job.save(using=alias)
        except IntegrityError:
            active = Job.objects.using(alias).filter(
                dedup_key=job.dedup_key, state__in=[JobState.READY, JobState.RUNNING]
            )
            existing = active.first()
            if existing is None:
                raise
            return existing
    _notify(alias, job.queue)
    return job


def _notify(alias: str, queue: str) -> None:
    """Wake PostgreSQL workers listening on the queue once the transaction commits."""
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", ["cachewire_queue", queue])


def deschedule(
    function: Callable[..., Any] | Task[..., Any] | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    using: str | None = None,
) -> int:
    """Cancel the jobs of this call that have not started; returns how many. A job already
    running is not stopped."""
    name = task_name(function)
    digest = arguments_hash(list(args or ()), dict(kwargs or {}))
    alias = using or router.db_for_write(Job)
    return Job.objects.using(alias).filter(
        task=name, arguments_hash=digest, state=JobState.READY
    ).update(state=JobState.CANCELLED, finished_at=timezone.now())


def health(*, using: str | None = None) -> dict[str, Any]:
    """A plain dict for monitoring: counts by state, the oldest ready job's age in seconds,
    running jobs past their lease, failures in the last hour, and counts per task and state."""
    alias = using or router.db_for_read(Job)
    jobs = Job.objects.using(alias)
    now = timezone.now()
    by_state = {state.value: 0 for state in JobState}
    for row in jobs.values("state").annotate(n=Count("id")):
        by_state[row["state"]] = row["n"]
    oldest = jobs.filter(state=JobState.READY).filter(
        Q(run_after__isnull=True) | Q(run_after__lte=now)
    ).aggregate(first=Min("created_at"))["first"]
    per_task: dict[str, dict[str, int]] = {}
    for row in jobs.values("task", "state").annotate(n=Count("id")):
        per_task.setdefault(row["task"], {})[row["state"]] = row["n"]
    return {
        "states": by_state,
        "oldest_ready_age_seconds": (now - oldest).total_seconds() if oldest else None,
        "running_past_lease": jobs.filter(state=JobState.RUNNING, lease_until__lt=now).count(),
        "failed_last_hour": jobs.filter(
            state=JobState.FAILED, finished_at__gte=now - dt.timedelta(hours=1)
        ).count(),
        "tasks": per_task,
    }
