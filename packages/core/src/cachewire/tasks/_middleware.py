"""The middleware pipeline around task submission and execution, and `CacheMiddleware`."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cachewire._settings import get_settings
from cachewire.cache import BaseCacheAdapter, validate_ttl
from cachewire.errors import CachedTaskError, ConfigurationError
from cachewire.tasks._context import SubmitResult, TaskContext
from cachewire.tasks._message import TaskMessage

__all__ = ["CacheMiddleware", "Middleware", "cache_errors_label", "cache_ttl_label"]

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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _label_error(task_name: str, label: str, raw: Any, expected: str) -> ConfigurationError:
    shown = repr(raw)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(f"task {task_name!r}: label {label}={shown} must be {expected}")


def cache_errors_label(labels: Mapping[str, Any], task_name: str) -> bool:
    """The ``cache_errors`` label as a bool; `ConfigurationError` for anything but a boolean,
    0/1 or one of true/false/yes/no/on/off."""
    raw = labels.get("cache_errors", False)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise _label_error(task_name, "cache_errors", raw, "true or false")


def cache_ttl_label(
    labels: Mapping[str, Any], task_name: str, default: float | None
) -> float | None:
    """The ``cache_ttl`` label in seconds (``0`` = do not cache), or ``default`` when absent;
    `ConfigurationError` for anything but a finite number >= 0."""
    raw = labels.get("cache_ttl")
    if raw is None:
        return default
    expected = "a number of seconds >= 0 (0 = do not cache)"
    if isinstance(raw, bool):
        raise _label_error(task_name, "cache_ttl", raw, expected)
    try:
        ttl = float(raw)
    except (TypeError, ValueError):
        raise _label_error(task_name, "cache_ttl", raw, expected) from None
    if not math.isfinite(ttl) or ttl < 0:
        raise _label_error(task_name, "cache_ttl", raw, expected)
    return ttl


class CacheMiddleware(Middleware):
    """Serve a task's result from a cache and coalesce identical concurrent runs.

    The key is the task name plus its canonical arguments (never the uuid), so identical calls
    share one entry, and concurrent identical calls run the body once through the cache's
    single flight. Labels per call: ``cache_ttl`` (seconds; ``0`` = do not cache this call) and
    ``cache_errors`` (true: store a failure as its type and message and raise `CachedTaskError`
    to later identical calls). A label with a bad value is a `ConfigurationError`, at submit time
    and when the task runs.

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
        return cache_ttl_label(ctx.labels, ctx.task_name, self.default_ttl)

    def before_submit(self, message: TaskMessage) -> None:
        cache_ttl_label(message.labels, message.name, self.default_ttl)
        cache_errors_label(message.labels, message.name)

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
        cache_errors = cache_errors_label(ctx.labels, ctx.task_name)
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
        cache_errors = cache_errors_label(ctx.labels, ctx.task_name)
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
