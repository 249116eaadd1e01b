"""Shared helpers: write a benchmark's section of RESULTS.md; count a private Redis's commands;
the counting invalidation target of the worker benchmarks; an admin connection to PostgreSQL."""

from __future__ import annotations

import itertools
import os
import platform
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

RESULTS = Path(__file__).with_name("RESULTS.md")
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
_MARK = "bench-mark-"


def write_section(name: str, body: str) -> None:
    """Replace the section ``name`` of RESULTS.md (created if missing)."""
    header = (
        f"_{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}_"
    )
    block = f"<!-- {name}:start -->\n## {name}\n\n{header}\n\n{body}\n<!-- {name}:end -->"
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nEach section is rewritten by its script; ratios compare against the floor or peer in the same run.\n"
    )
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    RESULTS.write_text(text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    """Start a throwaway ``redis-server`` (no persistence) on a free port; yield its URL.

    Raises RuntimeError if ``redis-server`` is missing or does not answer within 10 s.
    """
    port = _free_port()
    try:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise RuntimeError("redis-server is not on PATH; it is needed to count commands") from exc
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


class CommandCounter:
    """Counts the commands a Redis server receives from its clients, read through MONITOR.

    Commands that a script runs inside the server are left out: the script is one command and one
    round trip, counted once as the EVAL or EVALSHA that carried it. ``snapshot()`` and
    ``since()`` bound a window with ECHO markers, which are not counted either.
    """

    def __init__(self, url: str) -> None:
        self._control = redis.Redis.from_url(url)
        self._names: list[str] = []
        self._marks: dict[str, int] = {}
        self._next_mark = itertools.count()
        self._changed = threading.Condition()
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._reader = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._reader.start()
        # Started means MONITOR answered: a command sent from now on is in the log.
        if not self._started.wait(timeout=30):
            raise RuntimeError(f"MONITOR did not start: {self._failure!r}")

    def _read(self, url: str) -> None:
        # No socket timeout: MONITOR stays silent for as long as nobody sends a command (while
        # spawned workers import, for instance), and redis-py's default of 5 s would end it.
        client = redis.Redis.from_url(url, socket_timeout=None)
        try:
            with client.monitor() as monitor:
                self._started.set()
                for entry in monitor.listen():
                    self._log(entry["client_type"], entry["command"])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._failure = exc  # closed by close(), or the server stopped
        finally:
            client.close()
            with self._changed:
                self._changed.notify_all()

    def _log(self, client_type: str, command: str) -> None:
        if client_type == "lua":
            return
        name, _, rest = command.partition(" ")
        with self._changed:
            if name.lower() == "echo" and rest.startswith(_MARK):
                self._marks[rest] = len(self._names)
                self._changed.notify_all()
            else:
                self._names.append(name.lower())

    def snapshot(self) -> int:
        """Wait until every command run so far is logged; the log's position."""
        mark = f"{_MARK}{next(self._next_mark)}"
        self._control.echo(mark)
        with self._changed:
            if not self._changed.wait_for(
                lambda: mark in self._marks or not self._reader.is_alive(), timeout=60
            ):
                raise RuntimeError("MONITOR fell behind by more than 60 s")
            if mark not in self._marks:
                raise RuntimeError(f"MONITOR stopped: {self._failure!r}")
            return self._marks.pop(mark)

    def since(self, before: int) -> Counter[str]:
        """The commands, by name, received since ``snapshot()`` returned ``before``."""
        end = self.snapshot()
        with self._changed:
            return Counter(self._names[before:end])

    def number(self, key: str) -> int:
        """The integer stored at ``key`` (0 if missing)."""
        return int(self._control.get(key) or 0)

    def flush(self) -> None:
        """Empty the private server (this counter only runs on a server the benchmark started)."""
        self._control.flushall()

    def close(self) -> None:
        for client in self._control.client_list():
            if "O" in client["flags"]:  # the MONITOR connection
                self._control.client_kill_filter(_id=client["id"])
        self._reader.join(timeout=10)
        self._control.close()


class CountingSetup:
    """Cached functions that count their computations, and the check every setup runs."""

    library = ""

    def __init__(self) -> None:
        self.calls = 0
        self.functions: list[Callable[[int], Any]] = []

    def prime(self, customers: list[int]) -> None:
        for customer in customers:
            for function in self.functions:
                function(customer)

    def check_recomputes(self, customers: list[int], what: str) -> None:
        """Fail unless every function computes again for every customer (primed before)."""
        before = self.calls
        self.prime(customers)
        expected = len(customers) * len(self.functions)
        if self.calls - before != expected:
            raise SystemExit(
                f"{self.library} {what}: {self.calls - before} of {expected} recomputed"
            )


class CountingTarget:
    """Stands for a cached function on Redis in a worker benchmark: each invalidation is one
    INCR of ``key`` on the Redis at ``url`` (one round trip), which the producer watches."""

    parameters = ("user_id",)
    partition = ()

    def __init__(self, url: str, key: str, cache_id: str) -> None:
        self.cache_id = cache_id
        self.key = key
        self.client = redis.Redis.from_url(url)

    def check_invalidation_params(self, names: Any) -> None:
        pass

    def invalidate(self, **kwargs: Any) -> None:
        self.client.incr(self.key)

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


def postgres_admin(url: str) -> Any:
    """An autocommit connection to the PostgreSQL database at ``url``, to create and drop the
    databases a benchmark works in."""
    import psycopg

    parts = urlparse(url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname=(parts.path or "/test").lstrip("/"),
        autocommit=True,
    )
