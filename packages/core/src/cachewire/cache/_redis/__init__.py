"""The Redis cache adapter: a core without I/O, an async and a blocking twin that drive it."""

from __future__ import annotations

from cachewire.errors import ConfigurationError

try:
    import redis  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ConfigurationError(
        "RedisCacheAdapter needs redis-py, which is not installed: pip install 'cachewire[redis]'"
    ) from exc

from cachewire.cache._redis._async import RedisCacheAdapter
from cachewire.cache._redis._record import SCRIPTS

__all__ = ["SCRIPTS", "RedisCacheAdapter"]
