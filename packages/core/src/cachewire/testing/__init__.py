"""Conformance suites that cache adapters and dispatchers (ours and third parties') run.

The classes here are abstract test classes: subclass them in a module pytest collects, name the
subclass ``Test...`` and override the fixtures they declare.
"""

from __future__ import annotations

from cachewire.testing._cache_contract import CacheAdapterContract
from cachewire.testing._dispatcher_contract import DispatcherContract, RecordingFunction
from cachewire.testing._task_contract import TaskDispatchContract

__all__ = [
    "CacheAdapterContract",
    "DispatcherContract",
    "RecordingFunction",
    "TaskDispatchContract",
]
