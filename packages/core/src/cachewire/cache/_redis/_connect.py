"""Building the Redis clients of an adapter: timeouts by default, bytes only, no password logged."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

import attrs
import redis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from cachewire.errors import ConfigurationError

__all__ = ["Clients", "async_reader", "connect", "sync_reader", "tracking_connection"]

#: Errors after which a connection has closed itself: the client's own call then reconnects
#: and retries as the client is configured to.
_CONNECTION_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError)


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


def _taker(pool: Any) -> Callable[[], Any]:
    """``pool.get_connection`` as a call without arguments (redis-py before 6 wants a command
    name, which later versions warn about)."""
    take = pool.get_connection
    try:
        name = inspect.signature(take).parameters.get("command_name")
    except (TypeError, ValueError):
        name = None
    if name is not None and name.default is inspect.Parameter.empty:
        return lambda: take("GET")
    return cast(Callable[[], Any], take)


def sync_reader(client: redis.Redis) -> Callable[..., Any]:
    """A call that sends a read (``GET`` or ``MGET``) and returns its reply, for hits.

    It takes a connection from the client's pool (which checks it as for any command), sends,
    reads and gives it back, without the client's per-command layers (retry closures, metrics):
    these cost a hit about a tenth of a loopback round trip. A connection that fails has closed
    itself, and the read is sent again through the client's own call, which reconnects and
    retries as configured. A client with a single connection (or no pool) is used as it is.
    """
    command: Callable[..., Any] = client.execute_command
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(client, "connection", None) is not None:
        return command
    take, give_back = _taker(pool), pool.release

    def read(*args: Any, keys: Any) -> Any:
        try:
            connection = take()
        except _CONNECTION_ERRORS:
            return command(*args, keys=keys)
        try:
            connection.send_command(*args, keys=keys)
            return connection.read_response()
        except _CONNECTION_ERRORS:
            pass
        finally:
            give_back(connection)
        return command(*args, keys=keys)

    return read


def async_reader(client: aioredis.Redis) -> Callable[..., Awaitable[Any]]:
    """The `sync_reader` of an asyncio client (a connection that is cancelled while it waits for
    the reply closes itself, as in the client's own call)."""
    command = cast(Callable[..., Awaitable[Any]], client.execute_command)
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(client, "single_connection_client", False):
        return command
    take, give_back = _taker(pool), pool.release

    async def read(*args: Any, keys: Any) -> Any:
        try:
            connection = await take()
        except _CONNECTION_ERRORS:
            return await command(*args, keys=keys)
        try:
            await connection.send_command(*args, keys=keys)
            return await connection.read_response()
        except _CONNECTION_ERRORS:
            pass
        finally:
            await give_back(connection)
        return await command(*args, keys=keys)

    return read
