"""The ``dramatiq`` dispatcher: rule work and cachewire tasks as messages to Dramatiq actors."""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import dramatiq

from cachewire.dispatch import Dispatcher, RuleKwargs, resolve_raise_exception
from cachewire.errors import ConfigurationError, DispatchError
from cachewire.rules import encode_payload, get_rule
from cachewire_dramatiq._actors import (
    DEFAULT_QUEUE,
    RULES_ACTOR_NAME,
    TASKS_ACTOR_NAME,
    declare_rules_actor,
    declare_tasks_actor,
)

if TYPE_CHECKING:
    from cachewire import TaskMessage

__all__ = ["DramatiqDispatcher"]

logger = logging.getLogger("cachewire.dispatch")

# The queue names Dramatiq's `actor` decorator accepts.
_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")


class DramatiqDispatcher(Dispatcher):
    """Sends rule work to a Dramatiq actor on the global broker (`dramatiq.get_broker`).

    Options (rule ``dispatcher_config`` lower-case, or the ``dramatiq`` settings block upper-case):
    ``queue``, ``actor_name``, ``RAISE_EXCEPTION``, and the retry bounds used when the policy is
    to raise: ``max_retries``, ``min_backoff`` and ``max_backoff`` (milliseconds, as in Dramatiq).
    """

    name = "dramatiq"
    supports_batching = True
    can_enforce_timeout = True

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "queue": DEFAULT_QUEUE,
        "actor_name": RULES_ACTOR_NAME,
        "max_retries": 3,
        "min_backoff": 1000,
        "max_backoff": 60000,
    }
    _KNOWN: ClassVar[frozenset[str]] = frozenset({*DEFAULTS, "raise_exception"})

    def validate_config(self) -> None:
        unknown = sorted({key.lower() for key in self.config} - self._KNOWN)
        unknown += sorted({key.lower() for key in self.settings()} - self._KNOWN)
        if unknown:
            raise ConfigurationError(
                f"unknown dramatiq dispatcher option(s) {unknown}; known: {sorted(self._KNOWN)}"
            )
        queue = self.value("queue")
        if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
            raise ConfigurationError(
                f"dramatiq queue {queue!r} is not a Dramatiq queue name (a letter or underscore, "
                f"then letters, digits, '.', '-' or '_')"
            )
        for key in ("max_retries", "min_backoff", "max_backoff"):
            value = self.value(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"dramatiq option {key}={value!r} must be an int >= 0")

    def value(self, key: str) -> Any:
        """An option: the rule's config, else the settings block, else the default."""
        return self.option(key, self.DEFAULTS.get(key))

    @property
    def retry_options(self) -> dict[str, int]:
        """Dramatiq ``Retries`` options carried by each rule-work message."""
        return {
            "max_retries": self.value("max_retries"),
            "min_backoff": self.value("min_backoff"),
            "max_backoff": self.value("max_backoff"),
        }

    def dispatch(self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, **context: Any) -> None:
        broker = dramatiq.get_broker()
        queue = self.value("queue")
        actor = declare_rules_actor(broker, actor_name=self.value("actor_name"), queue=queue)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue,
            actor_name=actor.actor_name,
            args=(encode_payload(rule_ids, rule_kwargs),),
            kwargs={},
            options=self.retry_options,
        )
        raise_policy = resolve_raise_exception([get_rule(r) for r in rule_ids], self.name)
        self._enqueue(broker, message, retry=raise_policy)

    def submit_task(self, message: TaskMessage) -> None:
        broker = dramatiq.get_broker()
        queue = message.queue or self.value("queue")
        declare_tasks_actor(broker, queue=queue)
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

    def _retry_delay(self, attempt: int) -> float:
        """Seconds before enqueue attempt ``attempt + 1``: exponential, jittered, bounded."""
        low, high = self.value("min_backoff") / 1000, self.value("max_backoff") / 1000
        return float(min(high, low * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    def _enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], *, retry: bool
    ) -> None:
        """Enqueue, retrying within the retry bounds when asked; `DispatchError` if it cannot."""
        attempts = 1 + (self.value("max_retries") if retry else 0)
        for attempt in range(1, attempts + 1):
            try:
                broker.enqueue(message)
                return
            except Exception as exc:
                if attempt == attempts:
                    raise DispatchError(
                        f"Dramatiq broker {type(broker).__name__} did not take the message for "
                        f"actor {message.actor_name!r} on queue {message.queue_name!r} after "
                        f"{attempt} attempt(s): {exc}"
                    ) from exc
                delay = self._retry_delay(attempt)
                logger.warning(
                    "dramatiq: enqueue on %r failed (attempt %d of %d), retrying in %.2fs: %s",
                    message.queue_name,
                    attempt,
                    attempts,
                    delay,
                    exc,
                )
                time.sleep(delay)
