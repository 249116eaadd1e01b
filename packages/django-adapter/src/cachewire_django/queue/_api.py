"""`schedule`, `deschedule` and `health`: the queue as the application sees it."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from cachewire import Task, TaskMessage
from cachewire.errors import ConfigurationError, TaskArgumentError
from cachewire.tasks import default_registry
from cachewire.wire import canonical_arguments, to_portable, to_portable_arguments
from cachewire_django.queue import _settings
from cachewire_django.queue.models import Job, JobState

__all__ = [
    "CHANNEL",
    "DJANGO_TASK_META",
    "META_KEYS",
    "cancel_jobs",
    "check_meta",
    "deschedule",
    "enqueue",
    "health",
    "resolve_callable",
    "retry_jobs",
    "schedule",
    "task_name",
]

#: The meta key that names the `QueueBackend` alias of a job holding a Django task.
DJANGO_TASK_META = "django_task_backend"
#: What ``meta`` may hold.
META_KEYS = ("max_attempts", "timeout", "queue", "dedup_key", "atomic")
#: The PostgreSQL channel that wakes workers up (the payload is the queue name).
CHANNEL = "cachewire_queue"


def _registered(name: str) -> Task[..., Any] | None:
    return default_registry.get(name) if name in default_registry else None


def task_name(function: Callable[..., Any] | Task[..., Any] | str) -> str:
    """The name a worker runs ``function`` by; `ConfigurationError` when a worker would refuse
    it (neither a registered task nor a callable under ``CACHEWIRE_QUEUE["ALLOWED_MODULES"]``)."""
    if isinstance(function, Task):
        return function.name
    if isinstance(function, str):
        name = function
    elif callable(function) and getattr(function, "__module__", None):
        name = f"{function.__module__}.{getattr(function, '__qualname__', '')}"
    else:
        raise ConfigurationError(
            f"schedule() needs a task, a callable or a dotted path, not {function!r}"
        )
    if _registered(name) is not None or _allowed(name):
        return name
    allowed = ", ".join(_settings.current().allowed_modules) or "none"
    raise ConfigurationError(
        f"{name!r} is neither a registered cachewire task nor under CACHEWIRE_QUEUE"
        f"['ALLOWED_MODULES'] (now: {allowed}); decorate it with @cachewire.task or allow its "
        f"module: workers run nothing else"
    )


def _allowed(name: str) -> bool:
    if "<" in name:  # a lambda or a function defined inside another: not importable
        return False
    return any(
        name == prefix or name.startswith(prefix.rstrip(".") + ".")
        for prefix in _settings.current().allowed_modules
    )


def resolve_callable(name: str) -> Callable[..., Any]:
    """The allowed callable a worker runs for ``name``; `ConfigurationError` when ``name`` is
    not under ``ALLOWED_MODULES`` or cannot be imported."""
    if not _allowed(name):
        raise ConfigurationError(
            f"{name!r} is not a callable under CACHEWIRE_QUEUE['ALLOWED_MODULES']"
        )
    module_name, _, attribute = name.rpartition(".")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import {name!r}: {exc}") from exc
    if not callable(target):
        raise ConfigurationError(f"{name!r} is not callable")
    return target  # type: ignore[no-any-return,unused-ignore]


def arguments_hash(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """sha256 of the canonical text of a call's arguments; `TaskArgumentError` for a value that
    cannot travel."""
    return hashlib.sha256(canonical_arguments(args, kwargs).encode()).hexdigest()


def _meta_name(key: str) -> str:
    return f"meta[{key!r}]"


def check_meta(
    meta: Mapping[str, Any], *, name: Callable[[str], str] = _meta_name
) -> dict[str, Any]:
    """``meta`` checked (a copy); `ConfigurationError` for an unknown key or a bad value, the
    option named by ``name(key)`` (how the caller wrote it)."""
    if not isinstance(meta, Mapping):
        raise ConfigurationError(f"schedule(meta={meta!r}) must be a mapping")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ConfigurationError(
            f"schedule(meta=...) has unknown key(s) {unknown}; known: {list(META_KEYS)}"
        )
    checked = dict(meta)
    attempts = checked.get("max_attempts")
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise ConfigurationError(f"{name('max_attempts')}={attempts!r} must be an int >= 1")
    timeout = checked.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ConfigurationError(f"{name('timeout')}={timeout!r} must be seconds > 0")
    for key in ("queue", "dedup_key"):
        value = checked.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"{name(key)}={value!r} must be a non-empty string")
    if not isinstance(checked.get("atomic", False), bool):
        raise ConfigurationError(f"{name('atomic')} must be True or False")
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

    The row is written in the caller's transaction on ``using`` (default: the router's database
    for `Job`): if it rolls back, there is no job. ``meta`` may set ``max_attempts``,
    ``timeout`` (seconds), ``queue``, ``dedup_key`` (while a job with that key is ready or
    running, scheduling another returns that job) and ``atomic`` (run the job and mark it done
    in one transaction). Raises `ConfigurationError` for a function workers would refuse or a
    bad option, and `TaskArgumentError` for an argument that cannot travel.
    """
    name = task_name(function)
    call_args, call_kwargs = list(args or ()), dict(kwargs or {})
    options = check_meta(meta or {})
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -32768 <= priority <= 32767
    ):
        raise ConfigurationError(f"schedule(priority={priority!r}) must be an int of 16 bits")
    if run_after is not None and (
        not isinstance(run_after, dt.datetime) or timezone.is_naive(run_after)
    ):
        raise ConfigurationError("schedule(run_after=...) must be an aware datetime")
    registered = function if isinstance(function, Task) else _registered(name)
    timeout = options.get("timeout")
    queue = options.get("queue") or "default"
    body = None
    if registered is not None:
        if timeout is None:
            timeout = registered.resolve_option("timeout") or None
        body = TaskMessage(
            name=name,
            args=tuple(call_args),
            kwargs=call_kwargs,
            queue=queue,
            timeout=timeout,
            bind=bool(registered.resolve_option("bind")),
            labels=dict(registered.resolve_option("labels") or {}),
            registry=registered.registry.key,
        ).to_json()
    return enqueue(
        task=name,
        args=call_args,
        kwargs=call_kwargs,
        body=body,
        queue=queue,
        priority=priority,
        run_after=run_after,
        max_attempts=options.get("max_attempts"),
        timeout=timeout,
        dedup_key=options.get("dedup_key"),
        atomic=bool(options.get("atomic", False)),
        meta=options,
        using=using,
    )


def enqueue(
    *,
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    body: str | None = None,
    queue: str = "default",
    priority: int = 5,
    run_after: dt.datetime | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    dedup_key: str | None = None,
    atomic: bool = False,
    meta: Mapping[str, Any] | None = None,
    using: str | None = None,
) -> Job:
    """Write one job row (checked values; `schedule` and the ``db`` dispatcher call it)."""
    kwargs = dict(kwargs or {})
    where = f"job {task!r}"
    job = Job(
        task=task,
        args=[
            to_portable(value, where=f"{where} argument {i}", error=TaskArgumentError)
            for i, value in enumerate(args)
        ],
        kwargs=to_portable_arguments(kwargs, where=f"{where} argument", error=TaskArgumentError),
        body=body,
        arguments_hash=arguments_hash(args, kwargs),
        queue=queue,
        priority=priority,
        run_after=run_after,
        max_attempts=max_attempts or _settings.current().retry.max_attempts,
        timeout=timeout or None,
        dedup_key=dedup_key,
        atomic=atomic,
        meta=dict(meta or {}),
    )
    alias = using or router.db_for_write(Job)
    if job.dedup_key is None:
        job.save(using=alias, force_insert=True)
    else:
        try:
            with transaction.atomic(using=alias):
                job.save(using=alias, force_insert=True)
        except IntegrityError:
            existing = (
                Job.objects.using(alias)
                .filter(dedup_key=job.dedup_key, state__in=[JobState.READY, JobState.RUNNING])
                .first()
            )
            if existing is None:
                raise
            existing.deduplicated = True
            return existing
    wake_workers(alias, job.queue)
    return job


_NOTIFY_HOOK = "_cachewire_queue_notify"


def wake_workers(alias: str, queue: str) -> None:
    """On PostgreSQL, wake the workers listening once the job is visible: at once outside a
    transaction, else once per transaction at its commit (nothing after a rollback)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        _notify(alias, queue)
        return
    pending = getattr(connection, _NOTIFY_HOOK, None)
    if pending is not None and any(entry[1] is pending for entry in connection.run_on_commit):
        return

    def notify_at_commit() -> None:
        _notify(alias, queue)

    setattr(connection, _NOTIFY_HOOK, notify_at_commit)
    transaction.on_commit(notify_at_commit, using=alias, robust=True)


def _notify(alias: str, queue: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue])


def deschedule(
    function: Callable[..., Any] | Task[..., Any] | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    using: str | None = None,
) -> int:
    """Cancel the jobs of this call (same task, equal arguments) that have not started and
    return how many. A job already running is not stopped. ``function`` may also be a task of
    Django's task framework whose backend is `QueueBackend`."""
    name = _django_task_path(function) or task_name(function)
    digest = arguments_hash(list(args or ()), dict(kwargs or {}))
    alias = using or router.db_for_write(Job)
    return int(
        Job.objects.using(alias)
        .filter(task=name, arguments_hash=digest, state=JobState.READY)
        .update(state=JobState.CANCELLED, finished_at=timezone.now())
    )


def _django_task_path(function: object) -> str | None:
    """The path a job of Django's task framework names its task by, when ``function`` is such
    a task (told apart without importing the framework, which is optional)."""
    path = getattr(function, "module_path", None)
    if isinstance(path, str) and callable(getattr(function, "enqueue", None)):
        return path
    return None


def health(*, using: str | None = None) -> dict[str, Any]:
    """A plain dict for monitoring.

    ``states`` (count per state, every state present), ``oldest_ready_age_seconds`` (how long
    the longest-waiting due job has been due, None when none is), ``running_past_lease``
    (running jobs whose worker stopped renewing), ``failed_last_hour`` and ``tasks`` (counts per
    task name and state).
    """
    alias = using or router.db_for_read(Job)
    jobs = Job.objects.using(alias)
    now = timezone.now()
    by_state = dict.fromkeys(JobState.values, 0)
    for row in jobs.values("state").annotate(n=Count("id")).order_by():
        by_state[row["state"]] = row["n"]
    oldest = (
        jobs.filter(state=JobState.READY)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .aggregate(first=Min(Coalesce("run_after", "created_at")))["first"]
    )
    per_task: dict[str, dict[str, int]] = {}
    for row in jobs.values("task", "state").annotate(n=Count("id")).order_by():
        per_task.setdefault(row["task"], {})[row["state"]] = row["n"]
    return {
        "states": by_state,
        "oldest_ready_age_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else None,
        "running_past_lease": jobs.filter(state=JobState.RUNNING, lease_until__lt=now).count(),
        "failed_last_hour": jobs.filter(
            state=JobState.FAILED, finished_at__gte=now - dt.timedelta(hours=1)
        ).count(),
        "tasks": per_task,
    }


def retry_jobs(jobs: QuerySet[Job]) -> int:
    """Put the failed and cancelled jobs among ``jobs`` back as ready, each with as many more
    attempts as it had at first (its error history is kept). Returns how many."""
    return int(
        jobs.filter(state__in=[JobState.FAILED, JobState.CANCELLED]).update(
            state=JobState.READY,
            run_after=None,
            finished_at=None,
            claim=None,
            lease_until=None,
            max_attempts=F("attempts") + F("max_attempts"),
        )
    )


def cancel_jobs(jobs: QuerySet[Job]) -> int:
    """Cancel the ready jobs among ``jobs`` (a running job is not stopped); returns how many."""
    return int(
        jobs.filter(state=JobState.READY).update(
            state=JobState.CANCELLED, finished_at=timezone.now()
        )
    )
