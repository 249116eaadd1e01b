"""The ``rq`` dispatcher: rule work and tasks become RQ jobs carrying the core's JSON envelope."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import redis
from rq import Queue
from rq.job import Retry
from rq.serializers import JSONSerializer

from cachewire import (
    DispatchContext,
    Dispatcher,
    Option,
    RetryPolicy,
    Settings,
    TaskMessage,
    get_settings,
    register_dispatcher,
)
from cachewire.dispatch import RuleKwargs
from cachewire.errors import DispatchError

__all__ = ["BaseRQDispatcher", "RQDispatcher", "rq_retry"]

logger = logging.getLogger("cachewire.rq")

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class _JobOptions(NamedTuple):
    """The options every enqueue reads, resolved once per settings snapshot."""

    queue: Queue
    function_path: str
    job_timeout: int | None
    result_ttl: int | None
    failure_ttl: int | None


def rq_retry(policy: RetryPolicy) -> Retry | None:
    """RQ's `Retry` for a policy: one retry less than its runs, its delays in whole seconds.

    RQ runs a delayed retry (interval > 0) through its scheduler, so a worker consuming these
    jobs runs with ``--with-scheduler``; a zero delay requeues at once.
    """
    delays = policy.delays()
    if not delays:
        return None
    return Retry(max=len(delays), interval=[math.ceil(delay) for delay in delays])


class BaseRQDispatcher(Dispatcher):
    """What the ``rq`` and ``django_rq`` dispatchers share; subclasses say where queues come from.

    Jobs carry one argument, the core's versioned JSON, and use RQ's JSON serializer: the worker
    that consumes the queue runs with ``--serializer json``.
    """

    supports_batching = True
    can_enforce_timeout = True
    default_function_path: ClassVar[str] = "cachewire_rq.run_job"
    options: ClassVar[Mapping[str, Option]] = {
        "queue": Option(str, "default", "RQ queue of rule work and of tasks that name none"),
        "function_path": Option(str, None, "dotted path of the job function workers run"),
        "job_timeout": Option((int, float), None, "job_timeout of rule jobs (seconds)"),
        "result_ttl": Option(
            (int, type(None)), 0, "result_ttl of the jobs (0: not kept; None: RQ's default)"
        ),
        "failure_ttl": Option(int, None, "failure_ttl of the jobs (None: RQ's default)"),
        "retry": Option((RetryPolicy, Mapping), None, "backoff of retries under the raise policy"),
    }

    def __init__(self, **config: Any) -> None:
        self._queues: dict[Any, Queue] = {}
        self._queues_lock = threading.Lock()
        self._resolved: tuple[Settings, _JobOptions] | None = None
        super().__init__(**config)

    def job_options(self) -> _JobOptions:
        """The options of this dispatcher's jobs under the settings in force."""
        settings = get_settings()
        resolved = self._resolved
        if resolved is not None and resolved[0] is settings:
            return resolved[1]
        job_timeout = self.option("job_timeout")
        options = _JobOptions(
            queue=self.queue(),
            function_path=self.option("function_path") or self.default_function_path,
            job_timeout=math.ceil(job_timeout) if job_timeout else job_timeout,
            result_ttl=self.option("result_ttl"),
            failure_ttl=self.option("failure_ttl"),
        )
        self._resolved = (settings, options)
        return options

    def validate_config(self) -> None:
        self.retry_policy()  # a bad mapping of RetryPolicy arguments fails here, not at a change

    # -- where jobs go -------------------------------------------------------------------------

    def make_queue(self, name: str) -> Queue:
        """A `Queue` named ``name`` using RQ's JSON serializer."""
        raise NotImplementedError

    def queue_key(self, name: str) -> Any:
        """What identifies a built queue: its name, and where it lives when settings can move it."""
        return name

    def queue(self, name: str | None = None) -> Queue:
        """The queue for ``name`` (the ``queue`` option when None), built once."""
        name = name or self.option("queue")
        key = self.queue_key(name)
        with self._queues_lock:
            found = self._queues.get(key)
        if found is None:
            built = self.make_queue(name)
            with self._queues_lock:
                found = self._queues.setdefault(key, built)
        return found

    def retry_policy(self) -> RetryPolicy:
        """The ``retry`` option as a `RetryPolicy` (the default policy when unset)."""
        return RetryPolicy.coerce(
            self.option("retry"), where=f"the {self.name!r} dispatcher's retry option"
        )

    # -- dispatch ------------------------------------------------------------------------------

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        body = self.encode_rules(rule_ids, rule_kwargs, context)
        options = self.job_options()
        policy = self.retry_policy() if context.raise_exception else None
        self._enqueue(
            options,
            options.queue,
            body,
            description=f"cachewire rules {', '.join(rule_ids)}",
            job_timeout=options.job_timeout,
            retry=rq_retry(policy) if policy is not None else None,
            enqueue_policy=policy,
        )

    def submit_task(self, message: TaskMessage) -> None:
        timeout = message.timeout
        options = self.job_options()
        self._enqueue(
            options,
            self.queue(message.queue) if message.queue else options.queue,
            message.to_json(),
            description=f"cachewire task {message.name}",
            job_timeout=math.ceil(timeout) if timeout else options.job_timeout,
            job_id=message.uuid,
            retry=None,
            enqueue_policy=None,
        )

    def _enqueue(
        self,
        options: _JobOptions,
        queue: Queue,
        body: str,
        *,
        description: str,
        job_timeout: int | None,
        retry: Retry | None,
        enqueue_policy: RetryPolicy | None,
        job_id: str | None = None,
    ) -> None:
        def enqueue() -> None:
            queue.enqueue_call(
                options.function_path,
                args=(body,),
                timeout=job_timeout,
                result_ttl=options.result_ttl,
                failure_ttl=options.failure_ttl,
                description=description,
                job_id=job_id,
                retry=retry,
            )

        def retrying(failures: int, exc: BaseException, delay: float) -> None:
            logger.warning(
                "%s dispatcher: Redis unreachable for queue %r (failure %d), retrying in %.2fs",
                self.name,
                queue.name,
                failures,
                delay,
            )

        unreachable = (redis.ConnectionError, redis.TimeoutError)
        try:
            if enqueue_policy is None:
                enqueue()
            else:
                enqueue_policy.call(enqueue, retry_on=unreachable, on_retry=retrying)
        except unreachable as exc:
            raise DispatchError(
                f"the {self.name!r} dispatcher could not reach Redis for queue "
                f"{queue.name!r}: {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise DispatchError(
                f"the {self.name!r} dispatcher failed to enqueue on {queue.name!r}: {exc}"
            ) from exc


@register_dispatcher
class RQDispatcher(BaseRQDispatcher):
    """Enqueues on RQ queues of a Redis given by ``CONNECTION`` (a client) or ``URL``."""

    name = "rq"
    options: ClassVar[Mapping[str, Option]] = {
        **BaseRQDispatcher.options,
        "url": Option(str, DEFAULT_URL, "Redis URL of the queues (one client per URL)"),
        "connection": Option(redis.Redis, None, "a redis.Redis client to use instead of url"),
    }

    _clients: ClassVar[dict[str, redis.Redis]] = {}
    _clients_lock: ClassVar[threading.Lock] = threading.Lock()

    def connection(self) -> redis.Redis:
        """The ``CONNECTION`` option, else one shared client per ``URL``."""
        given: redis.Redis | None = self.option("connection")
        if given is not None:
            return given
        url: str = self.option("url")
        with self._clients_lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = redis.Redis.from_url(url)
            return client

    def queue_key(self, name: str) -> Any:
        return (name, self.option("url"), id(self.option("connection")))

    def make_queue(self, name: str) -> Queue:
        return Queue(name, connection=self.connection(), serializer=JSONSerializer)
