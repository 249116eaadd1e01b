"""The dispatchers that need no infrastructure: ``inline``, ``threadpool`` and ``asyncio``."""

from __future__ import annotations

from cachewire.dispatchers._builtin import AsyncIODispatcher, InlineDispatcher, ThreadPoolDispatcher

__all__ = ["AsyncIODispatcher", "InlineDispatcher", "ThreadPoolDispatcher"]
