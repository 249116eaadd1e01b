"""`CachedTask`: the core's `CacheMiddleware` semantics for plain Celery tasks."""

from __future__ import annotations

from typing import Any, ClassVar

from celery import Task

from cachewire import CacheMiddleware, TaskContext, TaskMessage

__all__ = ["LABELS", "CachedTask"]

#: The per-call labels read from a message's headers (``apply_async(headers={...})``).
LABELS = ("cache_ttl", "cache_errors")


class CachedTask(Task):
    """A Celery task base whose result is cached by task name and canonical arguments.

    ``@app.task(base=CachedTask)``: an identical call served from the cache does not run the
    body, and concurrent identical calls run it once. Per task, set ``cache_ttl`` /
    ``cache_errors`` as decorator options; per call, pass them as message headers
    (``apply_async(args, headers={"cache_ttl": 0})``; 0 = run and do not cache). The cache is
    ``cache_middleware.cache``, else cachewire's ``default_cache`` setting. Arguments must be
    plain JSON values.
    """

    cache_middleware: ClassVar[CacheMiddleware] = CacheMiddleware()
    cache_ttl: float | None = None
    cache_errors: bool = False

    def _labels(self) -> dict[str, Any]:
        labels: dict[str, Any] = {}
        if self.cache_ttl is not None:
            labels["cache_ttl"] = self.cache_ttl
        if self.cache_errors:
            labels["cache_errors"] = True
        request = self.request
        headers = getattr(request, "headers", None) or {}
        for name in LABELS:
            value = headers.get(name, getattr(request, name, None))
            if value is not None:
                labels[name] = value
        return labels

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run = super().__call__
        request = self.request
        message = TaskMessage(
            name=self.name,
            args=args,
            kwargs=kwargs,
            uuid=request.id or "direct-call",
            queue=(request.delivery_info or {}).get("routing_key"),
            labels=self._labels(),
            attempt=(request.retries or 0) + 1,
        )
        ctx = TaskContext.for_message(message)
        return self.cache_middleware.around_execute(ctx, lambda: run(*args, **kwargs))
