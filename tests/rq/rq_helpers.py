"""Helpers of the RQ tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import contextlib
import socket
import threading

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer


def remove_queue(client: redis.Redis, name: str) -> None:
    """Delete a queue, the jobs in it and in its registries, and its keys."""
    queue = Queue(name, connection=client, serializer=JSONSerializer)
    registries = [
        queue.failed_job_registry,
        queue.started_job_registry,
        queue.finished_job_registry,
        queue.deferred_job_registry,
        queue.scheduled_job_registry,
        queue.canceled_job_registry,
    ]
    job_ids = set(queue.get_job_ids())
    for registry in registries:
        job_ids.update(registry.get_job_ids())
    for job_id in job_ids:
        for key in client.scan_iter(match=f"{Job.redis_job_namespace_prefix}{job_id}*"):
            client.delete(key)
        for key in client.scan_iter(match=f"rq:results:{job_id}*"):
            client.delete(key)
    for key in client.scan_iter(match=f"*:{name}*"):
        client.delete(key)
    client.srem("rq:queues", f"rq:queue:{name}")


class TcpProxy:
    """A small TCP proxy in front of a server, which a test can cut and restore.

    Stand-in for ``cachewire.testing.TcpProxy`` (same methods). While cut, open connections are
    dropped and new ones are closed at once; `rejected` is set each time one is.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.rejected = threading.Event()
        self._cut = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                client.close()
                self.rejected.set()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `restore`."""
        with self._lock:
            self._cut = True
            self.rejected.clear()
            open_sockets = list(self._sockets)
        self._drop(*open_sockets)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self.cut()
        if self._listener is not None:
            self._listener.close()
