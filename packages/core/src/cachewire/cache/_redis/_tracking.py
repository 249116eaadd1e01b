"""Tag versions kept in this process, coherent with Redis through its client-side caching.

A tagged hit has to compare the record's tag versions with the current ones. Fetched with the
value, they cost an MGET of one key more per tag; kept here, a hit is one GET. They stay right
because Redis tells: a dedicated connection asks for ``CLIENT TRACKING on REDIRECT <its own id>
BCAST PREFIX <namespace>:t:`` and subscribes to ``__redis__:invalidate`` (RESP2), so any change
to a tag key (a bump by any client, a write that extends its expiry, expiry, eviction,
``FLUSHDB``) sends the key's name, and the copy of it here is dropped.

What makes a local version safe to compare (see docs/cache.md, "Local tag versions"):

- Redis sends the invalidation of a change before it answers any command that runs after the
  change. A hit therefore looks at its local versions only after its GET returned, and only
  when no message waits unread on the tracking connection and the reader is not between
  reading one and applying it (`known`); otherwise it reads the versions from Redis.
- A version read from Redis is stored only if no invalidation of that tag was applied since
  the read was prepared (`begin_fill` marks the tag, an invalidation removes the mark,
  `end_fill` stores only under its own mark).
- The copy is trusted only while the tracking connection is up: on an error, a silence longer
  than the ping allows, a closed adapter or in a forked child it is emptied, and tagged reads
  fetch their versions until a new connection subscribed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from redis import exceptions as redis_errors

__all__ = ["INVALIDATE_CHANNEL", "LocalTagVersions"]

logger = logging.getLogger("cachewire.cache")

INVALIDATE_CHANNEL = "__redis__:invalidate"

_trackers: weakref.WeakSet[LocalTagVersions] = weakref.WeakSet()


def _forget_in_child() -> None:
    for tracker in list(_trackers):
        tracker.forget_after_fork()


os.register_at_fork(after_in_child=_forget_in_child)


class LocalTagVersions:
    """This process's copy of the tag versions under one prefix, and the thread that keeps it.

    ``connect`` makes a new, unconnected RESP2 redis-py connection to the adapter's server. The
    reader thread starts on the first `begin_fill` (or `start`) of a process.
    """

    #: Seconds of silence after which the reader pings; a ping unanswered for ``PING_LIMIT``
    #: seconds ends the connection (the copy is then emptied).
    PING_EVERY = 1.0
    PING_LIMIT = 5.0
    #: The first pause before connecting again, and the longest (it doubles in between).
    RECONNECT_FIRST = 0.05
    RECONNECT_MAX = 2.0
    #: The most tag versions kept; beyond, the copy starts over.
    MAX_TAGS = 100_000

    def __init__(self, connect: Callable[[], Any], prefix: str, *, where: str) -> None:
        self._connect = connect
        self.prefix = prefix
        self._where = where
        #: Tag key -> version, as the record format holds it.
        self.versions: dict[str, bytes] = {}
        self._fills: dict[str, object] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Set while the reader holds messages it read but has not applied yet.
        self._busy = True
        # Polls the tracking socket for unread messages; None while the copy is not trusted.
        self._poller: Any = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._refused = False
        self._owner = os.getpid()
        #: The tracking connection's client id (for CLIENT KILL in tests), else None.
        self.client_id: int | None = None
        #: Connections that subscribed, tagged reads that fetched their versions from Redis,
        #: messages applied, tag versions dropped by them, and times the whole copy was dropped
        #: (disconnection, FLUSHDB, fork, close).
        self.connections = 0
        self.fetches = 0
        self.messages = 0
        self.dropped = 0
        self.resets = 0
        _trackers.add(self)

    # ----------------------------------------------------------------- the hit path

    @property
    def trusted(self) -> bool:
        return self._poller is not None

    def covers(self, tag_keys: Sequence[str]) -> bool:
        """Whether every one of ``tag_keys`` has a version here (checked again by `known`)."""
        if self._poller is None:
            return False
        versions = self.versions
        for key in tag_keys:  # noqa: SIM110 - a loop costs less than all() of a generator
            if key not in versions:
                return False
        return True

    def known(self, tag_keys: Sequence[str]) -> bytes | None:
        """The versions of ``tag_keys``, joined as a record holds them, when each is known here
        and no invalidation waits unread; else None. Call it after the value's read returned:
        Redis sent every invalidation of a change made before that read ahead of its answer.
        """
        poller = self._poller
        if poller is None:
            return None
        try:
            if poller.poll(0) or self._busy:
                return None  # a message waits, or is being applied
        except (RuntimeError, OSError, ValueError):
            return None  # another thread polls at this instant, or the socket just closed
        versions = self.versions
        try:
            return b",".join([versions[key] for key in tag_keys])
        except KeyError:
            return None

    # ------------------------------------------------------------------- filling

    def begin_fill(self, tag_keys: Sequence[str]) -> object | None:
        """Before reading ``tag_keys``' versions from Redis: a mark to give `end_fill`, or None
        while the copy is not trusted (the reader is started if this process has none)."""
        self.fetches += 1
        if self._poller is None:
            self.start()
            return None
        mark = object()
        with self._lock:
            for key in tag_keys:
                self._fills[key] = mark
        return mark

    def end_fill(
        self, mark: object | None, tag_keys: Sequence[str], found: Sequence[bytes | None]
    ) -> None:
        """Keep the versions read (``found``, None for a missing tag) of the tags nothing
        invalidated since `begin_fill` gave ``mark``; an empty ``found`` only removes the mark."""
        if mark is None:
            return
        with self._lock:
            fills, versions = self._fills, self.versions
            for index, key in enumerate(tag_keys):
                if fills.get(key) is not mark:
                    continue
                del fills[key]
                version = found[index] if index < len(found) else None
                if version is None or self._poller is None:
                    continue
                if len(versions) >= self.MAX_TAGS:
                    versions.clear()  # starts over: cheaper than keeping an order of use
                versions[key] = version

    def drop(self, tag_keys: Sequence[str]) -> None:
        """Forget ``tag_keys`` (this process bumped them): reads after this fetch them again."""
        with self._changed:
            for key in tag_keys:
                self.versions.pop(key, None)
                self._fills.pop(key, None)
            self._changed.notify_all()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the reader in this process unless it runs, the adapter closed or Redis refused
        tracking."""
        if self._thread is not None or self._closed.is_set() or self._refused:
            return
        with self._lock:
            if self._thread is not None or self._closed.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"cachewire tag versions {self.prefix}", daemon=True
            )
            self._thread.start()

    def close(self, *, wait: bool = True) -> None:
        """Stop the reader and forget every version (the adapter closes); with ``wait``, wait
        (up to 2 s) for the reader to end."""
        self._closed.set()
        self._forget()
        sock, thread = self._sock, self._thread
        if sock is not None and self._owner == os.getpid():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's copy, thread and socket are not this process's."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        closed, self._closed = self._closed.is_set(), threading.Event()
        if closed:
            self._closed.set()
        self._poller, self._sock, self._thread, self.client_id = None, None, None, None
        self._busy = True
        self.versions, self._fills = {}, {}
        self._owner = os.getpid()
        self.resets += 1

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, looked at after each change here (for tests)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def report(self) -> dict[str, Any]:
        return {
            "tracking": self.trusted,
            "tags": len(self.versions),
            "connections": self.connections,
            "fetches": self.fetches,
            "messages": self.messages,
            "dropped": self.dropped,
            "resets": self.resets,
        }

    # -------------------------------------------------------------------- reader

    def _forget(self) -> None:
        self._busy = True
        self._poller = None
        with self._changed:
            self.versions.clear()
            self._fills.clear()
            self.resets += 1
            self._changed.notify_all()

    def _run(self) -> None:
        owner, failures = os.getpid(), 0
        while not self._closed.is_set() and os.getpid() == owner:
            connection = self._connect()
            try:
                self._subscribe(connection)
                failures = 0
                self._listen(connection)
            except redis_errors.ResponseError as exc:
                self._refused = True
                logger.warning(
                    "cachewire: Redis at %s refused client tracking (%s); local tag versions "
                    "are off and tagged reads fetch their versions",
                    self._where,
                    exc,
                )
                return
            except Exception as exc:  # any failure of the connection: start over
                if not self._closed.is_set() and failures == 0:
                    logger.warning(
                        "cachewire: the tag version tracking connection to %s failed (%s: %s); "
                        "tagged reads fetch their versions until it is back",
                        self._where,
                        type(exc).__name__,
                        exc,
                    )
                failures += 1
            finally:
                if os.getpid() == owner:
                    self._forget()
                    self._sock = None
                    self.client_id = None
                    with contextlib.suppress(Exception):
                        connection.disconnect()
            pause = min(self.RECONNECT_FIRST * 2 ** min(failures, 10), self.RECONNECT_MAX)
            self._closed.wait(pause if failures else 0)

    def _subscribe(self, connection: Any) -> None:
        connection.connect()
        connection.send_command("CLIENT", "ID")
        client_id = int(connection.read_response())
        connection.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self.prefix
        )
        connection.read_response()
        connection.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
        reply = connection.read_response()
        if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
            raise redis_errors.ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        sock = connection._sock  # redis-py keeps its socket there; polled for unread messages
        if sock is None:
            raise redis_errors.ConnectionError("the tracking connection has no socket")
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        self._sock, self.client_id = sock, client_id
        with self._changed:
            self.connections += 1
            self._poller = poller  # trusted from here: every change from now on is sent
            self._changed.notify_all()

    def _listen(self, connection: Any) -> None:
        sock = cast(socket.socket, self._sock)
        ping_sent: float | None = None
        while not self._closed.is_set():
            self._busy = False
            ready, _, _ = select.select([sock], [], [], self.PING_EVERY)
            self._busy = True
            if not ready:
                now = time.monotonic()
                if ping_sent is None:
                    connection.send_command("PING")
                    ping_sent = now
                elif now - ping_sent > self.PING_LIMIT:
                    raise redis_errors.TimeoutError("the tracking connection stopped answering")
                continue
            while True:
                message = connection.read_response()
                if isinstance(message, list) and message[:1] == [b"pong"]:
                    ping_sent = None
                else:
                    self._apply(message)
                if not connection.can_read(timeout=0):
                    break
            if self._closed.is_set():
                return

    def _apply(self, message: Any) -> None:
        if not (isinstance(message, list) and len(message) == 3 and message[0] == b"message"):
            return
        keys = message[2]
        with self._changed:
            self.messages += 1
            if isinstance(keys, list):
                try:
                    names = [key.decode() for key in keys]
                except (AttributeError, UnicodeDecodeError):
                    names = None
            else:
                names = None  # FLUSHDB / FLUSHALL: every key is gone
            if names is None:
                self.versions.clear()
                self._fills.clear()
                self.resets += 1
            else:
                for name in names:
                    self.versions.pop(name, None)
                    self._fills.pop(name, None)
                self.dropped += len(names)
            self._changed.notify_all()
