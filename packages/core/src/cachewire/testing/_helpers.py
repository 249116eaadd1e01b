"""Helpers that the tests of cachewire and of its adapters share: state reset, settings override,
services that skip or fail, unique names, a TCP proxy to cut a broker off, and an event set by a
log message."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from cachewire._settings import Settings, configure, get_settings, reset_settings
from cachewire.dispatch import dispatch_stats, reset_dispatchers
from cachewire.rules import unregister_all
from cachewire.tasks import reset_task_stats

__all__ = [
    "LogWatch",
    "TcpProxy",
    "in_ci",
    "override_settings",
    "redis_namespace",
    "require_service",
    "reset_state",
    "service_reachable",
    "unique_name",
]


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set: missing services fail instead of skip."""
    return bool(os.environ.get("CI"))


def service_reachable(url: str, *, default_port: int = 0, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to the host and port of ``url`` opens."""
    parsed = urlparse(url)
    port = parsed.port or default_port
    if not port:
        return False
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout):
            return True
    except OSError:
        return False


_DEFAULT_PORTS = {"redis": 6379, "amqp": 5672, "postgres": 5432, "postgresql": 5432, "mysql": 3306}


def require_service(name: str, url: str) -> None:
    """Skip the calling test when ``name`` at ``url`` is unreachable; under CI, fail instead."""
    import pytest

    scheme = urlparse(url).scheme.split("+")[0]
    if service_reachable(url, default_port=_DEFAULT_PORTS.get(scheme, 0)):
        return
    message = f"{name} is not reachable at {url}; start it or set its URL variable"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


def unique_name(prefix: str = "cachewire-test") -> str:
    """A name no other test run uses (queues, key prefixes, schemas): ``prefix-<pid>-<random>``."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def redis_namespace(url: str, prefix: str = "cachewire-test") -> Iterator[str]:
    """A key prefix of the caller's own on the Redis at ``url``; on exit, the keys under it (and
    only those) are deleted. Tests never empty a database: users run them next to their data."""
    import redis

    namespace = unique_name(prefix)
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(url)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{namespace}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        finally:
            client.close()


def reset_state() -> None:
    """Forget what tests leave behind: settings, rules, dispatcher instances and counters."""
    reset_settings()
    unregister_all()
    reset_dispatchers()
    dispatch_stats.reset()
    reset_task_stats()


@contextlib.contextmanager
def override_settings(**changes: Any) -> Iterator[Settings]:
    """`configure(**changes)` for the block, then the settings that were in force before."""
    saved = get_settings()
    try:
        yield configure(**changes)
    finally:
        configure(
            default_dispatcher=saved.default_dispatcher,
            dispatcher_raise_exception=saved.dispatcher_raise_exception,
            dispatcher_settings=saved.dispatcher_settings,
            default_cache=saved.default_cache,
            task_guard=saved.task_guard,
            task_defaults=saved.task_defaults,
        )


class LogWatch(logging.Handler):
    """``seen`` is set once ``logger`` (or a logger under it) logs a message that contains
    ``text``: what a test waits for instead of sleeping, for example until a dispatcher says it
    will try its broker again. Attached while the ``with`` block runs::

        with LogWatch("cachewire.rq", "retrying") as watch:
            ...
            assert watch.seen.wait(30)
    """

    def __init__(self, logger: str, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(logger)
        self.text = text
        self.seen = threading.Event()
        self.messages: list[str] = []
        self._level = self.logger.level

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.seen.set()

    def __enter__(self) -> LogWatch:
        self._level = self.logger.level
        if not self.logger.isEnabledFor(logging.DEBUG):
            self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of a service, for outage tests that must not touch the
    machine's shared service: point the client at `port`, then `cut` (drop every connection and
    refuse new ones) and `restore`.

    Use it as a context manager, or call `start` and `close`.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._accepting = threading.Event()
        self._closed = threading.Event()
        self.port = 0

    @classmethod
    def for_url(cls, url: str, default_port: int = 0) -> TcpProxy:
        """A proxy in front of the host and port of ``url``."""
        parsed = urlparse(url)
        return cls(parsed.hostname or "127.0.0.1", parsed.port or default_port)

    def url_through(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parsed = urlparse(url)
        netloc = f"127.0.0.1:{self.port}"
        if parsed.username:
            auth = parsed.username + (f":{parsed.password}" if parsed.password else "")
            netloc = f"{auth}@{netloc}"
        return parsed._replace(netloc=netloc).geturl()

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting.set()
        threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True).start()
        return self

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._accepting.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(source)
            self._drop(sink)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `restore`."""
        self._accepting.clear()
        with self._lock:
            open_now = list(self._connections)
        for sock in open_now:
            self._drop(sock)

    def restore(self) -> None:
        """Accept and forward connections again."""
        self._accepting.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None

    def __enter__(self) -> TcpProxy:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
