from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cachewire._settings import reset_settings
from cachewire.dispatch import dispatch_stats
from cachewire.errors import ConfigurationError
from cachewire.rules import _rule


@pytest.fixture(autouse=True)
def _clean_write_side() -> Iterator[None]:
    reset_settings()
    dispatch_stats.reset()
    yield
    _rule.unregister_all()
    reset_settings()


@pytest.fixture
def sent_commands() -> Any:
    """``record(adapter)`` starts recording the names of the commands a Redis adapter's async
    client sends; ``record(adapter, blocking=True)`` those of its blocking twin's client, the
    commands of its pipelines included."""

    def record(adapter: Any, *, blocking: bool = False) -> list[str]:
        sent: list[str] = []
        if not blocking:
            original = adapter._client.execute_command

            async def counting(*args: Any, **kwargs: Any) -> Any:
                sent.append(str(args[0]))
                return await original(*args, **kwargs)

            adapter._client.execute_command = counting
            adapter._command = counting  # the hit path's own reference to it
            return sent
        client = adapter._sync_client
        original_sync = client.execute_command
        original_pipeline = client.pipeline

        def counting_sync(*args: Any, **kwargs: Any) -> Any:
            sent.append(str(args[0]))
            return original_sync(*args, **kwargs)

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = original_pipeline(*args, **kwargs)
            original_execute = pipe.execute

            def execute(*a: Any, **k: Any) -> Any:
                sent.extend(str(command[0][0]) for command in pipe.command_stack)
                return original_execute(*a, **k)

            pipe.execute = execute
            return pipe

        client.execute_command = counting_sync
        client.pipeline = counting_pipeline
        adapter._sync._command = counting_sync  # the twin's hit path's own reference
        return sent

    return record


class RecordingTarget:
    def __init__(self, cache_id: str, parameters: tuple[str, ...], partition: tuple[str, ...] = ()):
        self.cache_id = cache_id
        self.parameters = parameters
        self.partition = partition
        self.calls: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None
        self.event = threading.Event()

    def check_invalidation_params(self, names: Any) -> None:
        unknown = set(names) - set(self.parameters)
        if unknown:
            raise ConfigurationError(f"{self.cache_id} has no parameter {sorted(unknown)}")
        missing = set(self.partition) - set(names)
        if names and missing:
            raise ConfigurationError(f"partition parameter {sorted(missing)} is unmapped")

    def invalidate(self, **kwargs: Any) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(kwargs)
        self.event.set()

    async def ainvalidate(self, **kwargs: Any) -> None:
        self.invalidate(**kwargs)


@pytest.fixture
def recording_target() -> type[RecordingTarget]:
    """The stand-in cached-function class (records invalidations)."""
    return RecordingTarget
