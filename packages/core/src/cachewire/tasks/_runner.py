"""Run a task message: registry lookup, bind context, middlewares, timeout, guard release."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from cachewire._settings import get_settings
from cachewire.errors import TaskTimeoutError, UnknownTaskError
from cachewire.tasks._context import TaskContext, count
from cachewire.tasks._guard import resolve_guard
from cachewire.tasks._message import TaskMessage
from cachewire.tasks._registry import TaskRegistry, get_registry
from cachewire.tasks._task import Task, release_next

__all__ = ["arun_task", "run_task"]

logger = logging.getLogger("cachewire.tasks")

T = TypeVar("T")


def _decode(message: TaskMessage | str | bytes) -> TaskMessage:
    if isinstance(message, TaskMessage):
        return message
    return TaskMessage.from_json(message)


def _lookup(
    message: TaskMessage, registry: TaskRegistry | None, raise_errors: bool
) -> Task[..., Any] | None:
    """The message's task; None (logged, counted) or `UnknownTaskError` if it is not here."""
    try:
        return (registry or get_registry(message.registry)).get(message.name)
    except UnknownTaskError:
        count("unknown")
        logger.error("task %r [%s] is not registered here; dropped", message.name, message.uuid)
        if message.on_duplicate != "parallel":
            _release_unknown(message)
        if raise_errors:
            raise
        return None


def _release_unknown(message: TaskMessage) -> None:
    # Without the task there is no guard option to read: free the key in the settings' guard
    # so it does not stay blocked, dropping (and logging) what was held behind it.
    try:
        guard = resolve_guard(get_settings().task_guard)
        while (held := guard.finish(message.duplicate_key)) is not None:
            count("unknown")
            logger.error("task %r: dropped a held message %s", message.name, held)
    except Exception:
        logger.exception("task %r: could not release its duplicate guard", message.name)


def _call_args(ctx: TaskContext, message: TaskMessage) -> tuple[Any, ...]:
    return (ctx, *message.args) if message.bind else tuple(message.args)


def _record_error(message: TaskMessage, exc: BaseException) -> None:
    if isinstance(exc, TaskTimeoutError):
        count("timed_out")
        logger.error("task %s [%s] timed out: %s", message.name, message.uuid, exc)
    else:
        count("failed")
        logger.error("task %s [%s] raised", message.name, message.uuid, exc_info=exc)


class _Run:
    """What one run's body gave: its result, or the exception it raised."""

    __slots__ = ("error", "result")

    def __init__(self) -> None:
        self.result: Any = None
        self.error: Exception | None = None

    def outcome(self, raise_errors: bool) -> Any:
        """The result; on failure None, or the error raised again with ``raise_errors``."""
        if self.error is not None and raise_errors:
            raise self.error
        return self.result


@contextlib.contextmanager
def _running(
    task_obj: Task[..., Any],
    ctx: TaskContext,
    message: TaskMessage,
    timeout_errors: tuple[type[BaseException], ...] = (),
) -> Iterator[_Run]:
    """The scope of one run's body, the same for sync and async bodies.

    Before it: the before-hooks. During it: the duplicate key kept alive. An `Exception` from it
    is kept on the `_Run` (not raised); one of the runtime's ``timeout_errors`` is kept as
    `TaskTimeoutError`. After it: the after-hooks, the count and the log, then, whatever
    happened, the key released and the next held message submitted.
    """
    try:
        for middleware in task_obj.middlewares:
            middleware.before_execute(ctx)
        run = _Run()
        caught: tuple[type[BaseException], ...] = (Exception, *timeout_errors)
        try:
            with _keep_alive(task_obj, message):
                yield run
        except caught as exc:
            if timeout_errors and isinstance(exc, timeout_errors):
                timed_out = TaskTimeoutError(
                    f"task {message.name!r} [{message.uuid}] ran past the runtime's time limit "
                    f"({type(exc).__name__}: {exc})"
                )
                timed_out.__cause__ = exc
                run.error = timed_out
            else:
                run.error = exc  # type: ignore[assignment]  # an Exception: the rest are above
        for middleware in task_obj.middlewares:
            middleware.after_execute(ctx, run.result, run.error)
        if run.error is None:
            count("succeeded")
        else:
            _record_error(message, run.error)
    finally:
        if message.on_duplicate != "parallel":
            release_next(task_obj, message.duplicate_key)


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # A loop already runs in this thread (an inline dispatcher called from async code): run the
    # coroutine on a fresh loop in a helper thread and wait for it, blocking this thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="cachewire-task")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def run_task(
    message: TaskMessage | str | bytes,
    *,
    registry: TaskRegistry | None = None,
    raise_errors: bool = False,
    worker_id: str | None = None,
    timeout_errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Run one message in this thread and return the task's result.

    Async task bodies run through `arun_task` on ``asyncio.run`` when no loop is running in this
    thread, else on a fresh loop in a helper thread that this thread waits for. Failures
    (`UnknownTaskError`, `TaskTimeoutError`, the body's exception) are logged and counted, then
    re-raised when ``raise_errors`` is true; otherwise the result is None.
    """
    message = _decode(message)
    task_obj = _lookup(message, registry, raise_errors)
    if task_obj is None:
        return None
    if task_obj.is_async:
        return _run_coroutine(
            functools.partial(
                arun_task,
                message,
                registry=registry,
                raise_errors=raise_errors,
                worker_id=worker_id,
                timeout_errors=timeout_errors,
            )
        )
    ctx = TaskContext.for_message(message, worker_id=worker_id)
    call: Callable[[], Any] = functools.partial(
        task_obj.func, *_call_args(ctx, message), **message.kwargs
    )
    for middleware in reversed(task_obj.middlewares):
        call = functools.partial(middleware.around_execute, ctx, call)
    with _running(task_obj, ctx, message, timeout_errors) as run:
        run.result = call()
    return run.outcome(raise_errors)


async def arun_task(
    message: TaskMessage | str | bytes,
    *,
    registry: TaskRegistry | None = None,
    raise_errors: bool = False,
    worker_id: str | None = None,
    timeout_errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Run one message on the running loop and return the task's result.

    A ``timeout`` (seconds, > 0) cancels the run and raises `TaskTimeoutError`; sync bodies run
    in a worker thread, which a timeout abandons rather than stops. Failures are logged and
    counted, then re-raised when ``raise_errors`` is true; otherwise the result is None.
    ``worker_id`` is the runtime's name for this worker, for the bind context;
    ``timeout_errors`` are the runtime's own time-limit exceptions, reported (and counted) as
    `TaskTimeoutError`.
    """
    message = _decode(message)
    task_obj = _lookup(message, registry, raise_errors)
    if task_obj is None:
        return None
    ctx = TaskContext.for_message(message, worker_id=worker_id)
    args = _call_args(ctx, message)

    async def body() -> Any:
        if task_obj.is_async:
            return await task_obj.func(*args, **message.kwargs)
        return await asyncio.to_thread(functools.partial(task_obj.func, *args, **message.kwargs))

    call: Callable[[], Awaitable[Any]] = body
    for middleware in reversed(task_obj.middlewares):
        call = functools.partial(middleware.aaround_execute, ctx, call)
    with _running(task_obj, ctx, message, timeout_errors) as run:
        run.result = await _timed(call, message)
    return run.outcome(raise_errors)


async def _timed(call: Callable[[], Awaitable[Any]], message: TaskMessage) -> Any:
    if not message.timeout:
        return await call()
    try:
        async with asyncio.timeout(message.timeout):
            return await call()
    except TimeoutError as exc:
        raise TaskTimeoutError(
            f"task {message.name!r} [{message.uuid}] ran longer than its timeout of "
            f"{message.timeout}s and was cancelled"
        ) from exc


def _keep_alive(task_obj: Task[..., Any], message: TaskMessage) -> AbstractContextManager[None]:
    if message.on_duplicate == "parallel":
        return contextlib.nullcontext()
    return task_obj.guard.keep_alive(message.duplicate_key)
