"""The middleware pipeline around task submission and execution, and `CacheMiddleware`."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from cachewire._settings import get_settings
from cachewire.cache._base import BaseCacheAdapter, validate_ttl
from cachewire.errors import CachedTaskError, ConfigurationError
from cachewire.tasks._context import SubmitResult, TaskContext
from cachewire.tasks._message import TaskMessage

__all__ = ["CacheMiddleware", "Middleware"]

logger = logging.getLogger("cachewire.tasks")


class Middleware:
    """Hooks around a task. Override what you need; every default does nothing.

    Submit hooks run in the submitting process, execute hooks in the worker. `around_execute`
    (sync bodies under `run_task`) and `aaround_execute` (under `arun_task`) wrap the body: call
    ``call_next()`` to run the rest of the pipeline, or return a value without calling it to
    short-circuit the run.
    """

    def before_submit(self, message: TaskMessage) -> None:
        """Called before the duplicate guard and the dispatcher see the message."""

    def after_submit(self, message: TaskMessage, result: SubmitResult) -> None:
        """Called with the submission's outcome (also for queued and discarded ones)."""

    def before_execute(self, ctx: TaskContext) -> None:
        """Called in the worker before the body runs."""

    def after_execute(self, ctx: TaskContext, result: Any, error: BaseException | None) -> None:
        """Called in the worker after the body ran (``error`` is None on success)."""

    def around_execute(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        """Wrap the execution in `run_task`; return what the caller of the task gets."""
        return call_next()

    async def aaround_execute(
        self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Wrap the execution in `arun_task`; return what the caller of the task gets."""
        return await call_next()


_CACHE_PREFIX = "cachewire:task:"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value is True or value == 1


class CacheMiddleware(Middleware):
    """Serve a task's result from a cache and coalesce identical concurrent runs.

    The key is the task name plus its canonical arguments (never the uuid), so identical calls
    share one entry, and concurrent identical calls run the body once through the cache's
    single flight. Labels per call: ``cache_ttl`` (seconds; ``0`` = do not cache this call; an
    invalid value warns and uses ``default_ttl``) and ``cache_errors`` (true: store a failure as
    its type and message and raise `CachedTaskError` to later identical calls).

    ``cache`` defaults to the ``default_cache`` setting; running without either raises
    `ConfigurationError`.
    """

    def __init__(
        self,
        cache: BaseCacheAdapter | None = None,
        *,
        enabled: bool = True,
        default_ttl: float | None = 3600,
    ) -> None:
        self.cache = cache
        self.enabled = enabled
        self.default_ttl = validate_ttl(default_ttl, name="CacheMiddleware default_ttl")

    def key_for(self, message: TaskMessage) -> str:
        """The cache key of a call: task name and a hash of its canonical arguments."""
        return _CACHE_PREFIX + message.duplicate_key

    def _cache(self) -> BaseCacheAdapter:
        cache = self.cache if self.cache is not None else get_settings().default_cache
        if cache is None:
            raise ConfigurationError(
                "CacheMiddleware has no cache: pass CacheMiddleware(cache=...) or "
                "configure(default_cache=...)"
            )
        return cache

    def ttl_for(self, ctx: TaskContext) -> float | None:
        """The TTL of this call from its ``cache_ttl`` label (0 = do not cache)."""
        raw = ctx.labels.get("cache_ttl")
        if raw is None:
            return self.default_ttl
        try:
            if isinstance(raw, bool):
                raise ValueError("a boolean is not a number of seconds")
            ttl = float(raw)
            if not math.isfinite(ttl) or ttl < 0:
                raise ValueError("must be a finite number >= 0")
        except (TypeError, ValueError) as exc:
            text = (
                f"task {ctx.task_name!r}: label cache_ttl={raw!r} is not a number of seconds "
                f"({exc}); using default_ttl={self.default_ttl}"
            )
            logger.warning(text)
            warnings.warn(text, stacklevel=2)
            return self.default_ttl
        return ttl

    def _skip(self, ctx: TaskContext) -> bool:
        return not self.enabled or ctx.message is None or self.ttl_for(ctx) == 0

    @staticmethod
    def _unwrap(envelope: Any, own: list[BaseException]) -> Any:
        if isinstance(envelope, dict) and "error" in envelope:
            if own:
                raise own[0]
            error = envelope["error"]
            raise CachedTaskError(
                f"task failed earlier with {error['type']}: {error['message']} (cached)",
                error_type=str(error["type"]),
                error_message=str(error["message"]),
            )
        return envelope["ok"]

    @staticmethod
    def _envelope_error(exc: Exception) -> dict[str, Any]:
        return {"error": {"type": type(exc).__qualname__, "message": str(exc)}}

    def around_execute(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        if self._skip(ctx):
            return call_next()
        assert ctx.message is not None
        cache_errors = _truthy(ctx.labels.get("cache_errors", False))
        own: list[BaseException] = []

        def creator() -> dict[str, Any]:
            try:
                return {"ok": call_next()}
            except Exception as exc:
                if not cache_errors:
                    raise
                own.append(exc)
                return self._envelope_error(exc)

        envelope = self._cache().sync.get_or_create(
            self.key_for(ctx.message), creator, self.ttl_for(ctx)
        )
        return self._unwrap(envelope, own)

    async def aaround_execute(
        self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]
    ) -> Any:
        if self._skip(ctx):
            return await call_next()
        assert ctx.message is not None
        cache_errors = _truthy(ctx.labels.get("cache_errors", False))
        own: list[BaseException] = []

        async def creator() -> dict[str, Any]:
            try:
                return {"ok": await call_next()}
            except Exception as exc:
                if not cache_errors:
                    raise
                own.append(exc)
                return self._envelope_error(exc)

        envelope: dict[str, Any] = await self._cache().get_or_create(
            self.key_for(ctx.message), creator, self.ttl_for(ctx)
        )
        return self._unwrap(envelope, own)
