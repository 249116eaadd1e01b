"""The ``taskiq`` dispatcher: rule work and cachewire tasks as messages of one taskiq task."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar

from taskiq import AsyncBroker, Context, TaskiqDepends
from taskiq.kicker import AsyncKicker

import cachewire
from cachewire import DispatchContext, Dispatcher, Option
from cachewire.dispatch import RuleKwargs, dispatch_stats
from cachewire.errors import ConfigurationError
from cachewire.tasks import TaskMessage

__all__ = ["DEFAULT_TASK_NAME", "TaskiqDispatcher", "register_worker_task"]

logger = logging.getLogger("cachewire.taskiq")

#: The name the worker task is registered under.
DEFAULT_TASK_NAME = "cachewire.run_work"
# A task's timeout is enforced by cachewire's runner; taskiq's own limit is a backstop after it.
_TIMEOUT_GRACE = 5.0


def register_worker_task(broker: AsyncBroker, *, task_name: str = DEFAULT_TASK_NAME) -> Any:
    """Register the task that runs cachewire's messages on ``broker`` and return it.

    Call it in the module that defines the broker, the one ``taskiq worker module:broker``
    imports, so every worker knows the task. Registering twice returns the first registration.
    """
    existing = broker.find_task(task_name)
    if existing is not None:
        return existing

    async def run_cachewire_work(body: str, context: Context = TaskiqDepends()) -> Any:  # noqa: B008
        labels = context.message.labels or {}
        retries = labels.get("_retries", 0)
        attempt = int(retries) + 1 if str(retries).isdigit() else None
        return await cachewire.arun_work(body, dispatcher_name="taskiq", attempt=attempt)

    return broker.register_task(run_cachewire_work, task_name=task_name)


def _import_broker(path: str) -> AsyncBroker:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"taskiq dispatcher: broker={path!r} must be 'module:attribute', as for `taskiq worker`"
        )
    try:
        broker = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"taskiq dispatcher: cannot import broker {path!r}: {exc}"
        ) from exc
    if not isinstance(broker, AsyncBroker):
        raise ConfigurationError(f"taskiq dispatcher: {path!r} is {broker!r}, not a taskiq broker")
    return broker


class _SendLoop:
    """The event loop, in a daemon thread, on which every send of the dispatcher runs.

    A taskiq broker's connections belong to the loop that opened them; sending from one loop of
    our own, whatever thread or loop the change happened on, keeps the producer broker on it.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.pending: set[concurrent.futures.Future[Any]] = set()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="cachewire-taskiq", daemon=True
                ).start()
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            self.pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self.pending.discard(future)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every send started so far; False if some are still running."""
        with self._lock:
            pending = list(self.pending)
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done


class TaskiqDispatcher(Dispatcher):
    """Sends rule work and cachewire tasks to a taskiq broker.

    Options (rule ``dispatcher_config`` in lower case, ``DISPATCHER_SETTINGS["taskiq"]`` in upper
    case): ``broker`` (``"module:attribute"`` of the broker, required), ``task_name`` (the worker
    task, default ``cachewire.run_work``), ``labels`` (added to every message) and
    ``send_timeout`` (seconds a send from synchronous code may take).
    """

    name = "taskiq"
    supports_batching = True
    can_enforce_timeout = True
    options = {
        "broker": Option(str, None, "the broker as 'module:attribute'"),
        "task_name": Option(str, DEFAULT_TASK_NAME, "the worker task's name"),
        "labels": Option(dict, None, "labels added to every message"),
        "send_timeout": Option((int, float), 10.0, "seconds a send from sync code may take"),
    }

    _sends: ClassVar[_SendLoop] = _SendLoop()

    def validate_config(self) -> None:
        if self.option("broker") is None:
            raise ConfigurationError(
                "the taskiq dispatcher needs its broker: set DISPATCHER_SETTINGS['taskiq']"
                "['BROKER'] (or a rule's dispatcher_config['broker']) to 'module:attribute'"
            )

    @property
    def broker(self) -> AsyncBroker:
        return _import_broker(self.option("broker"))

    def _kicker(self, labels: dict[str, Any]) -> AsyncKicker[Any, Any]:
        base = dict(self.option("labels") or {})
        return AsyncKicker(self.option("task_name"), self.broker, {**base, **labels})

    def _send(self, kicker: AsyncKicker[Any, Any], body: str) -> None:
        """Send on the dispatcher's loop. From synchronous code, wait for it, so a failure reaches
        the error policy; from a running event loop, do not block it: a failure is logged and
        counted when it happens."""
        future = self._sends.submit(kicker.kiq(body))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                future.result(float(self.option("send_timeout")))
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise
            return
        future.add_done_callback(self._sent)

    @staticmethod
    def _sent(future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        dispatch_stats.bump("dispatch_errors")
        logger.error("taskiq dispatcher: a send failed", exc_info=future.exception())

    @classmethod
    def flush(cls, timeout: float | None = None) -> bool:
        """Wait until every send started so far has reached the broker (tests, shutdown)."""
        return cls._sends.wait(timeout)

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        labels: dict[str, Any] = {}
        if context.raise_exception:
            # Picked up by taskiq's retry middlewares when the broker has one.
            labels["retry_on_error"] = True
        self._send(self._kicker(labels), self.encode_rules(rule_ids, rule_kwargs, context))

    def submit_task(self, message: TaskMessage) -> None:
        labels: dict[str, Any] = dict(message.labels)
        if message.queue:
            # taskiq routes by broker, not by queue: the name travels as a label that routing
            # brokers (and the task's bind context) can read.
            labels.setdefault("queue", message.queue)
        if message.timeout:
            labels["timeout"] = float(message.timeout) + _TIMEOUT_GRACE
        kicker = self._kicker(labels).with_task_id(message.uuid)
        self._send(kicker, message.to_json())
