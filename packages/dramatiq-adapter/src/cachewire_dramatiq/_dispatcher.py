"""The ``dramatiq`` dispatcher: rule work and cachewire tasks as messages to Dramatiq actors."""

from __future__ import annotations

import logging
import math
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import dramatiq

from cachewire import DispatchContext, RetryPolicy, TaskMessage
from cachewire.dispatch import Dispatcher, Option, RuleKwargs
from cachewire.errors import ConfigurationError, DispatchError
from cachewire_dramatiq._actors import (
    DEFAULT_QUEUE,
    RULES_ACTOR_NAME,
    TASKS_ACTOR_NAME,
    declare_rules_actor,
    declare_tasks_actor,
)

__all__ = ["DramatiqDispatcher"]

logger = logging.getLogger("cachewire.dispatch")


def _no_broker() -> None:
    return None


#: The retry defaults are the core's, in Dramatiq's terms (retries after the first run, ms).
_CORE_POLICY = RetryPolicy()

# The queue names Dramatiq's `actor` decorator accepts.
_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")


class DramatiqDispatcher(Dispatcher):
    """Sends rule work and tasks to Dramatiq actors on the global broker (`dramatiq.get_broker`).

    The actors are declared on that broker the first time they are needed; workers declare them
    by importing `cachewire_dramatiq.actors` or calling `register_actor`.
    """

    name = "dramatiq"
    supports_batching = True
    can_enforce_timeout = True
    options: ClassVar[dict[str, Option]] = {
        "queue": Option(str, DEFAULT_QUEUE, "Dramatiq queue of the rule-work messages"),
        "actor_name": Option(str, RULES_ACTOR_NAME, "Dramatiq actor that receives rule work"),
        "max_retries": Option(
            int, _CORE_POLICY.max_attempts - 1, "retries of rule work when the policy is to raise"
        ),
        "min_backoff": Option(
            int, round(_CORE_POLICY.base_delay * 1000), "first retry delay, milliseconds"
        ),
        "max_backoff": Option(
            int, round(_CORE_POLICY.max_delay * 1000), "longest retry delay, milliseconds"
        ),
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        # Resolved once: a change of settings builds a new dispatcher (`resolve_dispatcher`).
        self.queue: str = self.option("queue")
        self.actor_name: str = self.option("actor_name")
        self.retry_options: dict[str, int] = {
            key: self.option(key) for key in ("max_retries", "min_backoff", "max_backoff")
        }
        self.retry_policy = RetryPolicy(
            max_attempts=self.retry_options["max_retries"] + 1,
            base_delay=self.retry_options["min_backoff"] / 1000,
            max_delay=self.retry_options["max_backoff"] / 1000,
        )
        # Per broker, the queues whose actor this dispatcher has declared (or found) there.
        self._declared: weakref.WeakKeyDictionary[dramatiq.Broker, set[str]] = (
            weakref.WeakKeyDictionary()
        )
        # The broker the rules actor was last declared on (a dead reference until then).
        self._rules_declared_on: Callable[[], dramatiq.Broker | None] = _no_broker

    def validate_config(self) -> None:
        queue = self.option("queue")
        if not _QUEUE_NAME.fullmatch(queue):
            raise ConfigurationError(
                f"dramatiq queue {queue!r} is not a Dramatiq queue name (a letter or underscore, "
                f"then letters, digits, '.', '-' or '_')"
            )
        for key in ("max_retries", "min_backoff", "max_backoff"):
            if self.option(key) < 0:
                raise ConfigurationError(f"dramatiq option {key}={self.option(key)!r} must be >= 0")

    def _broker_for(
        self, queue: str, declare: Callable[[dramatiq.Broker], object]
    ) -> dramatiq.Broker:
        """The global broker, with ``declare`` run on it once per queue."""
        broker = dramatiq.get_broker()
        known = self._declared.get(broker)
        if known is None:
            known = self._declared.setdefault(broker, set())
        if queue not in known:
            declare(broker)
            known.add(queue)
        return broker

    def _rules_broker(self) -> dramatiq.Broker:
        """The global broker, with the rules actor declared on it."""
        broker = dramatiq.get_broker()
        if self._rules_declared_on() is broker:  # the commonest case, without the lookups
            return broker
        queue = self.queue
        broker = self._broker_for(
            queue, lambda b: declare_rules_actor(b, actor_name=self.actor_name, queue=queue)
        )
        self._rules_declared_on = weakref.ref(broker)
        return broker

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        queue = self.queue
        broker = self._rules_broker()
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue,
            actor_name=self.actor_name,
            args=(self.encode_rules(rule_ids, rule_kwargs, context),),
            kwargs={},
            options=dict(self.retry_options),
        )
        self._enqueue(broker, message, retry=context.raise_exception)

    def submit_task(self, message: TaskMessage) -> None:
        queue = message.queue or self.queue
        broker = self._broker_for(f"task:{queue}", lambda b: declare_tasks_actor(b, queue=queue))
        options: dict[str, Any] = {"max_retries": 0}
        if message.timeout:
            options["time_limit"] = math.ceil(message.timeout * 1000)
        self._enqueue(
            broker,
            dramatiq.Message(
                queue_name=queue,
                actor_name=TASKS_ACTOR_NAME,
                args=(message.to_json(),),
                kwargs={},
                options=options,
                message_id=message.uuid,
            ),
            retry=False,
        )

    def _enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], *, retry: bool
    ) -> None:
        """Enqueue, retrying within the retry policy when asked; `DispatchError` if it cannot."""
        if not retry:
            try:
                broker.enqueue(message)
            except Exception as exc:
                raise self._not_taken(broker, message, exc) from exc
            return
        policy = self.retry_policy

        def log_retry(attempt: int, error: BaseException, delay: float) -> None:
            logger.warning(
                "dramatiq: enqueue on %r failed (attempt %d of %d), retrying in %.2fs: %s",
                message.queue_name,
                attempt,
                policy.max_attempts,
                delay,
                error,
            )

        try:
            policy.call(lambda: broker.enqueue(message), on_retry=log_retry)
        except Exception as exc:
            raise self._not_taken(broker, message, exc) from exc

    @staticmethod
    def _not_taken(
        broker: dramatiq.Broker, message: dramatiq.Message[Any], exc: Exception
    ) -> DispatchError:
        return DispatchError(
            f"Dramatiq's {type(broker).__name__} did not take the message for actor "
            f"{message.actor_name!r} on queue {message.queue_name!r}: {exc}"
        )
