"""`CacheMiddleware`: cache any actor's result on a cachewire cache adapter."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import dramatiq

import cachewire
from cachewire import BaseCacheAdapter, TaskContext, TaskMessage

__all__ = ["CacheMiddleware"]

_OPTIONS = ("cache_ttl", "cache_errors")


class CacheMiddleware(dramatiq.Middleware):
    """Serve an actor's result from a cache when the same actor ran with equal arguments.

    Keyed on the actor name and its canonical arguments. Concurrent identical messages, on any
    worker sharing the cache, run the actor once (the cache's single flight) and all get its
    result. Actor or message options: ``cache_ttl`` (seconds; ``0`` = do not cache) and
    ``cache_errors`` (true: a failure is stored and raised again as `CachedTaskError` to later
    identical messages). A message's option wins over its actor's, which wins over
    ``default_ttl``. ``cache`` defaults to cachewire's ``default_cache`` setting.
    """

    def __init__(
        self,
        cache: BaseCacheAdapter | None = None,
        *,
        enabled: bool = True,
        default_ttl: float | None = 3600,
    ) -> None:
        self.policy = cachewire.CacheMiddleware(cache, enabled=enabled, default_ttl=default_ttl)
        self._current = threading.local()
        self._wrap_lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        return set(_OPTIONS)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._current.message = message
        actor = broker.get_actor(message.actor_name)
        if not getattr(actor.fn, "__cachewire_cached__", False):
            with self._wrap_lock:
                if not getattr(actor.fn, "__cachewire_cached__", False):
                    actor.fn = self._wrap(actor)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._current.message = None

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._current.message = None

    def _wrap(self, actor: dramatiq.Actor[Any, Any]) -> Callable[..., Any]:
        fn = actor.fn

        @functools.wraps(fn)
        def cached(*args: Any, **kwargs: Any) -> Any:
            message = getattr(self._current, "message", None)
            if message is None or message.actor_name != actor.actor_name:
                return fn(*args, **kwargs)  # called directly, not by a worker
            labels = {
                name: message.options.get(name, actor.options.get(name))
                for name in _OPTIONS
                if name in message.options or name in actor.options
            }
            if labels.get("cache_ttl") == 0 or not self.policy.enabled:
                return fn(*args, **kwargs)  # not cached: skip building the key
            task_message = TaskMessage(
                name=actor.actor_name,
                args=args,
                kwargs=kwargs,
                uuid=message.message_id,
                labels=labels,
            )
            ctx = TaskContext.for_message(task_message)
            return self.policy.around_execute(ctx, lambda: fn(*args, **kwargs))

        cached.__cachewire_cached__ = True  # type: ignore[attr-defined]
        return cached
