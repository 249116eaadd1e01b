"""Dramatiq for cachewire: the ``dramatiq`` dispatcher, its actors and a result-cache middleware."""

from __future__ import annotations

from cachewire_dramatiq._actors import RULES_ACTOR_NAME, TASKS_ACTOR_NAME
from cachewire_dramatiq._cache import CacheMiddleware
from cachewire_dramatiq._dispatcher import DramatiqDispatcher
from cachewire_dramatiq._register import register_actor

__all__ = [
    "RULES_ACTOR_NAME",
    "TASKS_ACTOR_NAME",
    "CacheMiddleware",
    "DramatiqDispatcher",
    "register_actor",
]
