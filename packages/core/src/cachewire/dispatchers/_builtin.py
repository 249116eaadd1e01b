"""The dispatchers that need no infrastructure: inline, threadpool and asyncio."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from cachewire.dispatch import DispatchContext, Dispatcher, Option, RuleKwargs, register_dispatcher
from cachewire.rules import arun_rules, run_rules
from cachewire.tasks import arun_task, run_task

if TYPE_CHECKING:
    from cachewire.wire import TaskMessage

__all__ = ["AsyncIODispatcher", "InlineDispatcher", "ThreadPoolDispatcher"]

logger = logging.getLogger("cachewire.dispatch")


@register_dispatcher
class InlineDispatcher(Dispatcher):
    """Runs the work on the calling thread (in Django: inside the on-commit callback)."""

    name = "inline"
    supports_batching = True

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        run_rules(rule_ids, rule_kwargs, dispatcher_name=self.name)

    def submit_task(self, message: TaskMessage) -> None:
        run_task(message)


@register_dispatcher
class ThreadPoolDispatcher(Dispatcher):
    """Runs the work on one process-wide thread pool, built on first use with ``MAX_WORKERS``
    (default 4). Pending work is drained at interpreter exit; `flush` waits for it in tests."""

    name = "threadpool"
    supports_batching = True
    DEFAULT_MAX_WORKERS: ClassVar[int] = 4
    options = {
        "max_workers": Option(int, DEFAULT_MAX_WORKERS, "size of the process-wide pool"),
    }
    DRAIN_TIMEOUT: ClassVar[float] = 10.0

    _pool: ClassVar[concurrent.futures.ThreadPoolExecutor | None] = None
    _pool_size: ClassVar[int] = 0
    _pending: ClassVar[set[concurrent.futures.Future[Any]]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        wanted = int(self.option("max_workers"))
        cls = type(self)
        with cls._lock:
            if cls._pool is None:
                cls._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=wanted, thread_name_prefix="cachewire"
                )
                cls._pool_size = wanted
            elif wanted != cls._pool_size:
                logger.warning(
                    "threadpool dispatcher asked for %d workers, but the process-wide pool was "
                    "built with %d and keeps that size; set MAX_WORKERS in the settings instead",
                    wanted,
                    cls._pool_size,
                )
            return cls._pool

    def _submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        future = self._executor().submit(fn, *args, **kwargs)
        cls = type(self)
        with cls._lock:
            cls._pending.add(future)
        future.add_done_callback(self._done)

    @classmethod
    def _done(cls, future: concurrent.futures.Future[Any]) -> None:
        with cls._lock:
            cls._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("threadpool work failed", exc_info=future.exception())

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        self._submit(run_rules, list(rule_ids), rule_kwargs, dispatcher_name=self.name)

    def submit_task(self, message: TaskMessage) -> None:
        self._submit(run_task, message)

    @classmethod
    def flush(cls, timeout: float | None = None) -> bool:
        """Wait until all work handed to the pool so far (and work it queued) is done."""
        while True:
            with cls._lock:
                pending = list(cls._pending)
            if not pending:
                return True
            _, not_done = concurrent.futures.wait(pending, timeout=timeout)
            if not_done:
                return False

    @classmethod
    def _shutdown(cls) -> None:
        if cls._pool is not None and not cls.flush(cls.DRAIN_TIMEOUT):
            logger.error("threadpool dispatcher: work still pending at exit was abandoned")

    @classmethod
    def _forget_pool(cls) -> None:
        # A forked child must not use the parent's threads.
        cls._pool = None
        cls._pool_size = 0
        cls._pending = set()
        cls._lock = threading.Lock()


atexit.register(ThreadPoolDispatcher._shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=ThreadPoolDispatcher._forget_pool)


@register_dispatcher
class AsyncIODispatcher(Dispatcher):
    """Runs the work as a task on the event loop: the running one, or the loop that was running
    when the change happened (scheduled thread-safely). With neither, it runs inline (DEBUG log)."""

    name = "asyncio"
    supports_batching = False
    can_enforce_timeout = True

    _pending_tasks: ClassVar[set[asyncio.Future[Any]]] = set()

    def _schedule(self, make: Any, fallback: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            task = running.create_task(make())
            self._pending_tasks.add(task)
            task.add_done_callback(self._pending_tasks.discard)
            return
        if loop is not None and loop.is_running() and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._track(make), loop)
            return
        logger.debug("asyncio dispatcher: no running event loop, running inline")
        fallback()

    async def _track(self, make: Any) -> None:
        task = asyncio.ensure_future(make())
        self._pending_tasks.add(task)
        task.add_done_callback(self._pending_tasks.discard)
        await task

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        ids = list(rule_ids)
        self._schedule(
            lambda: arun_rules(ids, rule_kwargs, dispatcher_name=self.name),
            lambda: run_rules(ids, rule_kwargs, dispatcher_name=self.name),
            context.loop,
        )

    def submit_task(self, message: TaskMessage) -> None:
        self._schedule(lambda: arun_task(message), lambda: run_task(message), None)

    @classmethod
    async def drain(cls) -> None:
        """Wait until every task this dispatcher started (and those they started) is done."""
        while cls._pending_tasks:
            await asyncio.gather(*list(cls._pending_tasks), return_exceptions=True)
