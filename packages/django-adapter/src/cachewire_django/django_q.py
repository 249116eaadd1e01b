"""The ``django_q`` dispatcher: rule work and cachewire tasks as django-q2 tasks.

Producers enqueue one django-q task per dispatch whose only argument is cachewire's wire body; the
cluster (``manage.py qcluster``) runs `run`, which hands it to `cachewire.run_work`. Workers import
the modules that define rules and cached functions when Django starts (``cachewire_django`` in
``INSTALLED_APPS`` does it), so they know every rule id a producer sends.

Options (a rule's ``dispatcher_config`` in lower case, ``DISPATCHER_SETTINGS["django_q"]`` in
upper case): ``cluster`` (a ``Q_CLUSTER`` name, for projects running several clusters), ``group``
(the django-q task group shown in the admin), ``function_path`` (the worker callable, by default
``cachewire_django.django_q.run``), ``timeout`` (seconds, the default task timeout), and the
common ``raise_exception`` and ``fallback``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from cachewire import (
    DispatchContext,
    Dispatcher,
    Option,
    RetryPolicy,
    Settings,
    get_settings,
    run_work,
)
from cachewire.dispatch import RuleKwargs
from cachewire.errors import DispatcherUnavailableError
from cachewire.wire import TaskMessage

__all__ = ["DEFAULT_FUNCTION_PATH", "DjangoQDispatcher", "run"]

DEFAULT_FUNCTION_PATH = "cachewire_django.django_q.run"
_NAME = "django_q"
logger = logging.getLogger("cachewire.django_q")


@functools.cache
def _async_task() -> Callable[..., Any]:
    """django-q's ``async_task``, imported once (on first use: it needs Django set up)."""
    from django_q.tasks import async_task

    return async_task


def run(body: str) -> Any:
    """The django-q task function: run one cachewire message (rule work or a task).

    A rule error raises only when the error policy says so, which makes django-q record the task
    as failed (and retry it when the cluster's ``retry`` and ``max_attempts`` allow).
    """
    from django_q.exceptions import TimeoutException

    worker = multiprocessing.current_process()
    return run_work(
        body,
        dispatcher_name=_NAME,
        worker_id=f"{worker.name}:{worker.pid}",
        timeout_errors=(TimeoutException,),  # django-q's timer: counted as TaskTimeoutError
    )


#: The worker callable, the django-q options and the retry policy of a dispatcher's enqueues.
_Resolved = tuple[str, dict[str, Any], RetryPolicy]


class DjangoQDispatcher(Dispatcher):
    """Sends rule work and tasks to a django-q2 cluster (any broker django-q supports; the ORM
    broker makes the enqueue part of the database)."""

    name = _NAME
    supports_batching = True
    can_enforce_timeout = True
    options: ClassVar[dict[str, Option]] = {
        "cluster": Option(str, None, "the Q_CLUSTER name to enqueue on (default: the default)"),
        "group": Option(str, None, "the django-q task group (shown in the admin)"),
        "function_path": Option(str, DEFAULT_FUNCTION_PATH, "the worker callable"),
        "timeout": Option((int, float), None, "task timeout in seconds (default: the cluster's)"),
        "retry": Option(
            (RetryPolicy, Mapping), None, "backoff of enqueue retries under the raise policy"
        ),
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._resolved: tuple[Settings, _Resolved] | None = None

    def validate_config(self) -> None:
        try:
            import django_q  # noqa: F401
        except ImportError as exc:
            raise DispatcherUnavailableError(
                "the 'django_q' dispatcher needs django-q2: "
                "pip install 'cachewire-django[django-q]'"
            ) from exc
        self.retry_policy()  # a bad mapping of RetryPolicy arguments fails here, not at a change

    def retry_policy(self) -> RetryPolicy:
        """The ``retry`` option as a `RetryPolicy` (the default policy when unset)."""
        return RetryPolicy.coerce(
            self.option("retry"), where="the 'django_q' dispatcher's retry option"
        )

    #: One thread for enqueues made from async code (Django refuses ORM calls on an event loop);
    #: it keeps one database connection instead of opening one per call.
    _async_bridge: ClassVar[concurrent.futures.ThreadPoolExecutor | None] = None
    _bridge_lock: ClassVar[threading.Lock] = threading.Lock()

    def _enqueue(
        self,
        body: str,
        timeout: float | None = None,
        cluster: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        # Not `get_running_loop`, which raises (a slow path) in sync code.
        if asyncio._get_running_loop() is None:
            self._enqueue_here(body, timeout, cluster, policy)
            return
        cls = type(self)
        with cls._bridge_lock:
            if cls._async_bridge is None:
                cls._async_bridge = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="cachewire-django-q"
                )
        # Waited for, so a failing enqueue reaches the error policy like a sync one.
        cls._async_bridge.submit(self._enqueue_here, body, timeout, cluster, policy).result()

    @classmethod
    def close(cls) -> None:
        """Close the async bridge's thread and its database connection (tests, shutdown)."""
        with cls._bridge_lock:
            bridge, cls._async_bridge = cls._async_bridge, None
        if bridge is not None:
            from django.db import connections

            bridge.submit(connections.close_all).result()
            bridge.shutdown(wait=True)

    def _enqueue_here(
        self,
        body: str,
        timeout: float | None,
        cluster: str | None,
        policy: RetryPolicy | None,
    ) -> None:
        function_path, defaults, _ = self._options()
        options = dict(defaults)  # django-q takes items out of the dict it is given
        if cluster is not None:
            options["cluster"] = cluster
        if timeout is not None:
            options["timeout"] = max(1, round(timeout))
        async_task = _async_task()
        if policy is None:
            async_task(function_path, body, q_options=options)
            return
        from django.db import InterfaceError, OperationalError

        def retrying(failures: int, exc: BaseException, delay: float) -> None:
            logger.warning(
                "django_q dispatcher: the broker is unreachable (failure %d: %s), retrying in "
                "%.2fs",
                failures,
                exc,
                delay,
            )

        # django-q's ORM broker closes a connection that failed before its next use, so each
        # attempt connects afresh; django-q takes items out of the options, so each gets a copy.
        policy.call(
            lambda: async_task(function_path, body, q_options=dict(options)),
            retry_on=(OperationalError, InterfaceError),
            on_retry=retrying,
        )

    def _options(self) -> _Resolved:
        """The worker callable, the django-q options of this dispatcher's enqueues and its
        retry policy, looked up once per settings snapshot (``DISPATCHER_SETTINGS`` may change,
        in tests)."""
        settings = get_settings()
        known = self._resolved
        if known is not None and known[0] is settings:
            return known[1]
        options: dict[str, Any] = {}
        for key in ("cluster", "group"):
            value = self.option(key)
            if value is not None:
                options[key] = value
        timeout = self.option("timeout")
        if timeout is not None:
            options["timeout"] = max(1, round(timeout))
        resolved = (self.option("function_path"), options, self.retry_policy())
        self._resolved = (settings, resolved)
        return resolved

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        policy = self._options()[2] if context.raise_exception else None
        self._enqueue(self.encode_rules(rule_ids, rule_kwargs, context), policy=policy)

    def submit_task(self, message: TaskMessage) -> None:
        """A task's ``queue`` names the cluster (django-q's queue) it is enqueued on."""
        self._enqueue(message.to_json(), message.timeout, message.queue)
