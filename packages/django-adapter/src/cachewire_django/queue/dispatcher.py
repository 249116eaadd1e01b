"""The ``db`` dispatcher: rule work and tasks become jobs of the durable queue.

The job is written in the transaction of the data change (the dispatcher sets
`Dispatcher.runs_in_transaction`), so an invalidation commits or rolls back with the change and
is not lost if the process dies right after the commit. ``manage.py cachewire_worker`` runs it
through `cachewire.run_work`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cachewire import DispatchContext, Dispatcher, TaskMessage
from cachewire.dispatch import Option

__all__ = ["DbDispatcher"]

#: The task name of rule-work jobs (what health() and the admin show).
RULES_TASK = "cachewire.rules"


class DbDispatcher(Dispatcher):
    """Writes each dispatch as one job in the queue's database."""

    name = "db"
    supports_batching = True
    can_enforce_timeout = True
    runs_in_transaction = True
    options: ClassVar[Mapping[str, Option]] = {
        "queue": Option(str, None, "queue of the jobs (default: 'default', or the task's queue)"),
        "priority": Option(int, 5, "priority of the jobs (higher runs first)"),
        "max_attempts": Option(int, None, "runs per job before it fails (default: setting)"),
        "database": Option(
            str, None, "database alias of the queue (default: the alias of the change)"
        ),
    }

    def _alias(self, using: str | None) -> str | None:
        return self.option("database") or using

    def dispatch(
        self,
        *,
        rule_ids: Sequence[str],
        rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]],
        context: DispatchContext,
    ) -> None:
        from cachewire_django.queue._api import enqueue

        enqueue(
            task=RULES_TASK,
            body=self.encode_rules(rule_ids, rule_kwargs, context),
            queue=self.option("queue") or "default",
            priority=self.option("priority"),
            max_attempts=self.option("max_attempts"),
            using=self._alias(context.using),
        )

    def submit_task(self, message: TaskMessage) -> None:
        from cachewire_django.queue._api import enqueue

        enqueue(
            task=message.name,
            args=message.args,
            kwargs=message.kwargs,
            body=message.to_json(),
            queue=message.queue or self.option("queue") or "default",
            priority=self.option("priority"),
            max_attempts=self.option("max_attempts"),
            timeout=message.timeout,
            using=self._alias(None),
        )
