"""The actors that run cachewire work on Dramatiq workers, declared on demand per broker."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

import cachewire
from cachewire.errors import PayloadError, TaskTimeoutError

__all__ = [
    "DEFAULT_QUEUE",
    "RULES_ACTOR_NAME",
    "TASKS_ACTOR_NAME",
    "declare_rules_actor",
    "declare_tasks_actor",
    "run_work",
]

#: The actor that receives rule work unless a rule or the settings name another.
RULES_ACTOR_NAME = "cachewire.run_rules"
#: The actor that runs `@cachewire.task` messages.
TASKS_ACTOR_NAME = "cachewire.run_task"
DEFAULT_QUEUE = "default"

# Actor options every cachewire actor carries. ``cache_ttl=0`` keeps our own actors out of
# `CacheMiddleware`; ``throws`` sends a malformed body straight to the dead letters, since no
# retry can make it readable.
_COMMON_OPTIONS: dict[str, Any] = {"cache_ttl": 0, "throws": (PayloadError,)}

_declare_lock = threading.Lock()


def run_work(body: str) -> Any:
    """The worker entry of both actors: cachewire decodes, routes, applies the error policy and
    counts. The attempt of a retried message is Dramatiq's retry count plus one."""
    current = CurrentMessage.get_current_message()
    attempt = None if current is None else current.options.get("retries", 0) + 1
    return cachewire.run_work(body, dispatcher_name="dramatiq", attempt=attempt)


def _run_rules(body: str) -> None:
    run_work(body)


def _run_task(body: str) -> Any:
    try:
        result = run_work(body)
    except TimeLimitExceeded as exc:
        raise TaskTimeoutError(
            "the task ran longer than its timeout and Dramatiq's time limit stopped it"
        ) from exc
    # Without a results backend a returned value would only make Dramatiq log a warning.
    return result if _keeps_results() else None


def _keeps_results() -> bool:
    from dramatiq.results import Results

    return any(isinstance(m, Results) for m in dramatiq.get_broker().middleware)


def _declare(
    broker: dramatiq.Broker, actor_name: str, queue: str, fn: Any, options: dict[str, Any]
) -> dramatiq.Actor[Any, Any]:
    """The actor called ``actor_name`` on ``broker``, declared now if it is not yet; ``queue``
    is declared too, so a worker of this broker consumes it. Dramatiq's `CurrentMessage`
    middleware is added when missing: the actors read their message's retry count from it."""
    with _declare_lock:
        if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
            broker.add_middleware(CurrentMessage())
        try:
            actor: dramatiq.Actor[Any, Any] = broker.get_actor(actor_name)
        except ActorNotFound:
            actor = dramatiq.Actor(
                fn,
                broker=broker,
                actor_name=actor_name,
                queue_name=queue,
                priority=0,
                options={**_COMMON_OPTIONS, **options},
            )
        broker.declare_queue(queue)
    return actor


def declare_rules_actor(
    broker: dramatiq.Broker, *, actor_name: str = RULES_ACTOR_NAME, queue: str = DEFAULT_QUEUE
) -> dramatiq.Actor[Any, Any]:
    """The rule-work actor ``actor_name`` on ``broker`` (declared if needed), on ``queue``."""
    return _declare(broker, actor_name, queue, _run_rules, {})


def declare_tasks_actor(
    broker: dramatiq.Broker, *, queue: str = DEFAULT_QUEUE
) -> dramatiq.Actor[Any, Any]:
    """The task actor on ``broker`` (declared if needed), consuming ``queue`` too.

    Tasks are not retried by Dramatiq (``max_retries=0``): a failed task is recorded once and
    moved to the dead letters. A task without a ``timeout`` has no time limit (not Dramatiq's
    default of 10 minutes); one with a timeout carries it as its message's ``time_limit``.
    """
    options = {"max_retries": 0, "time_limit": float("inf")}
    return _declare(broker, TASKS_ACTOR_NAME, queue, _run_task, options)
