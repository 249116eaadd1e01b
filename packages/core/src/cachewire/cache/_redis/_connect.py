"""Building the Redis clients of an adapter: timeouts by default, bytes only, no password logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import attrs
import redis
import redis.asyncio as aioredis

from cachewire.errors import ConfigurationError

__all__ = ["Clients", "connect", "tracking_connection"]


@attrs.frozen
class Clients:
    async_client: aioredis.Redis
    sync_client: redis.Redis | None
    where: str  # the server, for messages (never the password)


def connect(
    redis_url: str | None,
    *,
    client: aioredis.Redis | None,
    sync_client: redis.Redis | None,
    max_connections: int,
    socket_timeout: float | None,
    socket_connect_timeout: float | None,
) -> Clients:
    """The clients given, or built from ``redis_url`` with the timeouts; `ConfigurationError`
    for a missing URL, a bad pool size or a client that decodes responses."""
    if redis_url is None and client is None:
        raise ConfigurationError("RedisCacheAdapter needs redis_url= or client=")
    if isinstance(max_connections, bool) or not (
        isinstance(max_connections, int) and max_connections >= 1
    ):
        raise ConfigurationError(f"max_connections must be an int >= 1, got {max_connections!r}")
    for given in (client, sync_client):
        if given is not None and given.get_connection_kwargs().get("decode_responses"):
            raise ConfigurationError(
                "RedisCacheAdapter needs a client that returns bytes: "
                "create it with decode_responses=False"
            )
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
    }
    built = client or aioredis.Redis.from_url(cast(str, redis_url), **options)
    if sync_client is None and redis_url is not None:
        sync_client = redis.Redis.from_url(redis_url, **options)
    if redis_url is not None:
        where = redis_url.split("@")[-1]
    else:
        kwargs: dict[str, Any] = built.get_connection_kwargs()  # type: ignore[no-untyped-call]
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return Clients(built, sync_client, where)


def tracking_connection(client: redis.Redis) -> Callable[[], Any]:
    """Makes a connection to ``client``'s server, outside its pool, speaking RESP2 (so the
    invalidation messages arrive as pub/sub messages on it)."""
    pool = client.connection_pool
    options = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if not name.startswith("maint_notifications")  # RESP3 only, and not for a subscriber
    }
    options["protocol"] = 2
    connection_class = pool.connection_class

    def make() -> Any:
        return connection_class(**options)

    return make
