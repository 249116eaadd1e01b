"""The ``celery`` dispatcher: rule work and cachewire tasks become messages for a Celery worker."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import celery
import kombu.exceptions

from cachewire import DispatchContext, Dispatcher, Option, TaskMessage, register_dispatcher
from cachewire.dispatch import RuleKwargs
from cachewire.errors import DispatchError
from cachewire_celery._redelivery import Redelivery

__all__ = ["TASK_NAME", "CeleryDispatcher"]

logger = logging.getLogger("cachewire_celery")

#: The name the worker task is registered under (`cachewire_celery.tasks.run_work`).
TASK_NAME = "cachewire_celery.tasks.run_work"

#: Celery's publish retry, bounded so a save never waits for Celery's default retry window.
DEFAULT_PUBLISH_RETRY_POLICY: Mapping[str, Any] = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

#: Seconds a hard time limit is given past the soft one, for the task to report its timeout.
HARD_LIMIT_GRACE = 5.0


@register_dispatcher
class CeleryDispatcher(Dispatcher):
    """Sends work to the ``cachewire_celery.tasks.run_work`` task (or ``task_name``).

    Options (a rule's ``dispatcher_config`` key, or the UPPER key of the ``celery`` settings
    block): ``task_name``, ``queue``, ``publish_retry_policy``, and the common ``raise_exception``
    and ``fallback``. When the broker cannot be reached, rule work whose policy is to raise is
    held and sent again in the background (`redelivery`); with ``fallback="inline"`` it runs in
    the calling process instead; other work is logged and counted. The change never fails.
    """

    name = "celery"
    supports_batching = True
    can_enforce_timeout = True
    options = {
        "task_name": Option(str, TASK_NAME, "the Celery task that runs the work on workers"),
        "queue": Option(str, None, "the queue to send to (None: Celery's routing and default)"),
        "publish_retry_policy": Option(
            dict,
            DEFAULT_PUBLISH_RETRY_POLICY,
            "Celery's retry policy for one publish (bounded: a save never waits long)",
        ),
    }

    _redelivery: ClassVar[Redelivery | None] = None
    _redelivery_lock: ClassVar[threading.Lock] = threading.Lock()

    # ------------------------------------------------------------------ producer side

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        body = self.encode_rules(rule_ids, rule_kwargs, context)
        app = celery.current_app._get_current_object()
        try:
            self._send(app, body)
        except kombu.exceptions.OperationalError as exc:
            if not context.raise_exception or self.option("fallback") == "inline":
                raise _translated(exc) from exc  # the core logs, counts, runs it inline
            # The raise policy says this work matters: send it again once the broker answers.
            self.redelivery().add(lambda: self._send(app, body), what=f"rules {list(rule_ids)}")
            logger.warning(
                "celery broker unreachable (%s): rules %s will be sent again in the background",
                exc,
                list(rule_ids),
            )
        except DispatchError:
            raise
        except Exception as exc:
            raise _translated(exc) from exc

    def submit_task(self, message: TaskMessage) -> None:
        options: dict[str, Any] = {"task_id": message.uuid}
        if message.timeout:
            options["soft_time_limit"] = message.timeout
            options["time_limit"] = message.timeout + HARD_LIMIT_GRACE
        try:
            self._send(celery.current_app, message.to_json(), queue=message.queue, **options)
        except DispatchError:
            raise
        except Exception as exc:
            raise _translated(exc) from exc

    def _send(
        self, app: celery.Celery, body: str, *, queue: str | None = None, **options: Any
    ) -> None:
        """Send one body to the worker task: ``apply_async`` if the task is registered on
        ``app`` (so ``task_always_eager`` holds), else ``send_task``. Raises Celery's errors."""
        task_name = self.option("task_name")
        options["queue"] = queue or self.option("queue")
        options["retry"] = True
        options["retry_policy"] = dict(self.option("publish_retry_policy"))
        local = app.tasks.get(task_name)
        if local is not None:
            local.apply_async(args=(body,), **options)
        else:
            app.send_task(task_name, args=(body,), **options)

    @classmethod
    def redelivery(cls) -> Redelivery:
        """The process-wide queue of publications waiting for the broker to come back."""
        with cls._redelivery_lock:
            if cls._redelivery is None:
                cls._redelivery = Redelivery()
            return cls._redelivery

    @classmethod
    def _forget_redelivery(cls) -> None:
        # A forked child (a prefork worker) must not share the parent's thread and lock.
        cls._redelivery = None
        cls._redelivery_lock = threading.Lock()

    @classmethod
    def flush_redelivery(cls, timeout: float | None = None) -> bool:
        """Wait until every publication held for redelivery is sent (or given up); for tests."""
        with cls._redelivery_lock:
            pending = cls._redelivery
        return True if pending is None else pending.flush(timeout)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CeleryDispatcher._forget_redelivery)


def _translated(exc: Exception) -> DispatchError:
    if isinstance(exc, kombu.exceptions.OperationalError):
        return DispatchError(f"celery could not publish to its broker: {exc}")
    return DispatchError(f"celery could not take the work: {exc!r}")
