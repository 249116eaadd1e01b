"""Worker-side registration: declare cachewire's actors before the worker consumes."""

from __future__ import annotations

from typing import Any

import dramatiq

from cachewire_dramatiq._actors import declare_rules_actor, declare_tasks_actor
from cachewire_dramatiq._dispatcher import DramatiqDispatcher

__all__ = ["register_actor"]


def register_actor(
    *,
    actor_name: str | None = None,
    queue: str | None = None,
    broker: dramatiq.Broker | None = None,
) -> dramatiq.Actor[Any, Any]:
    """Declare the rule-work actor, and the task actor, on ``broker`` (default: the global one).

    ``actor_name`` and ``queue`` default to the ``dramatiq`` settings block (``ACTOR_NAME``,
    ``QUEUE``), then to ``cachewire.run_rules`` and ``default``. Call it once per distinct
    ``actor_name``/``queue`` your rules use. Idempotent; returns the rule-work actor.
    """
    defaults = DramatiqDispatcher()
    broker = broker or dramatiq.get_broker()
    queue = queue or defaults.option("queue")
    actor = declare_rules_actor(
        broker, actor_name=actor_name or defaults.option("actor_name"), queue=queue
    )
    declare_tasks_actor(broker, queue=queue)
    return actor
