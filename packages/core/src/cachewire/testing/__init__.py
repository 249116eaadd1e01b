"""Public test support for cachewire and its adapters (install ``cachewire[testing]``).

- Conformance suites: abstract test classes that cache adapters and dispatchers (ours and third
  parties') run. Subclass one in a module pytest collects, name the subclass ``Test...`` and
  override the fixtures it declares.
- Helpers: `reset_state`, `override_settings`, `require_service`, `redis_namespace`,
  `unique_name`, `TcpProxy` (cut a broker off without touching the machine's service) and
  `LogWatch` (an event set when a logger logs a given message).
"""

from __future__ import annotations

from cachewire.testing._cache_contract import CacheAdapterContract
from cachewire.testing._dispatcher_contract import DispatcherContract, RecordingFunction
from cachewire.testing._helpers import (
    LogWatch,
    TcpProxy,
    in_ci,
    override_settings,
    redis_namespace,
    require_service,
    reset_state,
    service_reachable,
    unique_name,
)
from cachewire.testing._task_contract import TaskDispatchContract

__all__ = [
    "CacheAdapterContract",
    "DispatcherContract",
    "LogWatch",
    "RecordingFunction",
    "TaskDispatchContract",
    "TcpProxy",
    "in_ci",
    "override_settings",
    "redis_namespace",
    "require_service",
    "reset_state",
    "service_reachable",
    "unique_name",
]
