"""`CacheMiddleware`: taskiq results served from a cachewire cache, one computation per key."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import TaskiqMessage, TaskiqMiddleware

import cachewire
from cachewire.cache import BaseCacheAdapter, InMemoryCacheAdapter
from cachewire.tasks import TaskContext, TaskMessage

__all__ = ["CacheMiddleware"]

# The message whose body is running in this task or thread (set by `pre_execute`).
_running: contextvars.ContextVar[TaskiqMessage | None] = contextvars.ContextVar(
    "cachewire_taskiq_message", default=None
)
_WRAPPED = "__cachewire_cached__"


def _labels(message: TaskiqMessage) -> dict[str, Any]:
    return dict(message.labels or {})


class CacheMiddleware(TaskiqMiddleware):
    """Serve a task's result from ``cache`` when the same task ran with equal arguments.

    The key is the task name and the canonical JSON of its arguments (never the task id), so a
    second identical call is a hit, and identical calls running at once on several workers compute
    once: the body runs inside the cache adapter's single flight (`get_or_create`). ``cache=None``
    is an `InMemoryCacheAdapter` of this worker; give a `RedisCacheAdapter` to share results and
    the single flight across workers.

    Labels per message: ``cache_ttl`` (seconds; ``0`` = do not cache this call) and
    ``cache_errors`` (true: a failure is cached too and raised again as `CachedTaskError`). A bad
    value is a `ConfigurationError`, raised by ``kiq()`` and by the worker.

    Hooks: ``pre_send`` checks the labels; ``pre_execute`` routes the task's body through the
    cache (a hit returns the stored result without running the body); the result is stored by the
    same call once the body returns, so ``post_save`` has nothing left to do.
    """

    def __init__(
        self,
        cache: BaseCacheAdapter | None = None,
        enabled: bool = True,
        default_ttl: float | None = 3600,
    ) -> None:
        super().__init__()
        self.cache = cache if cache is not None else InMemoryCacheAdapter()
        self._core = cachewire.CacheMiddleware(
            cache=self.cache, enabled=enabled, default_ttl=default_ttl
        )

    @property
    def enabled(self) -> bool:
        return self._core.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._core.enabled = value

    def key_for(self, task_name: str, args: Any, kwargs: Any) -> str:
        """The cache key of a call: the task name and a hash of its canonical arguments."""
        return self._core.key_for(TaskMessage(name=task_name, args=args, kwargs=kwargs))

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        """Refuse a message whose labels are wrong before it reaches the broker."""
        self._core.before_submit(TaskMessage(name=message.task_name, labels=_labels(message)))
        return message

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        """Route this message's body through the cache."""
        task = self.broker.find_task(message.task_name)
        if task is not None and not getattr(task.original_func, _WRAPPED, False):
            task.original_func = self._wrap(task.original_func)
        _running.set(message)
        return message

    def _context(self, message: TaskiqMessage) -> TaskContext:
        labels = _labels(message)
        core_message = TaskMessage(
            name=message.task_name,
            args=tuple(message.args),
            kwargs=dict(message.kwargs),
            uuid=message.task_id,
            labels=labels,
        )
        return TaskContext.for_message(core_message)

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        core = self._core

        def current() -> TaskiqMessage | None:
            message = _running.get()
            # A direct call of the function (not through this worker) is never cached.
            return message if message is not None and message.task_name else None

        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def cached_async(*args: Any, **kwargs: Any) -> Any:
                message = current()
                call: Callable[[], Awaitable[Any]] = functools.partial(original, *args, **kwargs)
                if message is None:
                    return await call()
                return await core.aaround_execute(self._context(message), call)

            wrapper: Callable[..., Any] = cached_async
        else:

            @functools.wraps(original)
            def cached_sync(*args: Any, **kwargs: Any) -> Any:
                message = current()
                call = functools.partial(original, *args, **kwargs)
                if message is None:
                    return call()
                return core.around_execute(self._context(message), call)

            wrapper = cached_sync
        # Resolved hints, so taskiq reads the parameters' types through the wrapper; hints that
        # cannot be resolved stay as the function wrote them.
        with contextlib.suppress(Exception):
            wrapper.__annotations__ = typing.get_type_hints(original)
        setattr(wrapper, _WRAPPED, True)
        return wrapper
