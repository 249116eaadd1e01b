"""Shared fixtures: real services, skipped with a reason locally and required in CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from cachewire.testing import in_ci, redis_namespace, require_service, service_reachable

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = in_ci()


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", REDIS_URL)
    return REDIS_URL


# Databases a test run may take for itself (13 is the benchmarks'); claims live in database 0.
_TEST_DATABASES = (15, 14, 12, 11, 10, 9, 8)


@pytest.fixture(scope="session")
def _test_database(redis_url: str) -> Iterator[int]:
    """A database of this test run's own, so runs on one machine never empty each other's."""
    import redis

    claims = redis.Redis.from_url(redis_url)
    token = f"{socket.gethostname()}:{os.getpid()}"
    for number in _TEST_DATABASES:
        name = f"cachewire:test-database:{number}"
        if claims.set(name, token, nx=True, ex=3600):
            break
    else:
        claims.close()
        pytest.fail(f"every test database {_TEST_DATABASES} is claimed by another test run")
    try:
        yield number
    finally:
        if claims.get(name) == token.encode():
            claims.delete(name)
        claims.close()


@pytest.fixture
def redis_db_url(redis_url: str, _test_database: int) -> Iterator[str]:
    """A Redis URL on this run's own database. Afterwards the keys the test created there are
    deleted, and only those: a database is never emptied (users run the tests next to their
    data)."""
    import redis

    parsed = urlparse(redis_url)
    url = f"redis://{parsed.hostname}:{parsed.port or 6379}/{_test_database}"
    client = redis.Redis.from_url(url)
    before = set(client.scan_iter(count=1000))
    try:
        yield url
    finally:
        created = [key for key in client.scan_iter(count=1000) if key not in before]
        for start in range(0, len(created), 500):
            client.delete(*created[start : start + 500])
        client.close()


@pytest.fixture
def redis_ns(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on `redis_url`; its keys are deleted afterwards."""
    with redis_namespace(redis_url) as namespace:
        yield namespace


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own, on its own port, that the test may stop and start."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed; install it to run outage tests"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not service_reachable(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"private redis-server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with tempfile.TemporaryDirectory() as directory:
        server = PrivateRedis(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()
