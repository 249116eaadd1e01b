"""Publications that failed while the broker was unreachable, sent again in the background."""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable

import attrs

from cachewire import RetryPolicy

__all__ = ["Redelivery"]

logger = logging.getLogger("cachewire_celery")


@attrs.define
class _Pending:
    send: Callable[[], None]
    what: str
    attempt: int = 1


class Redelivery:
    """A bounded queue of sends, retried oldest first by one daemon thread, with the backoff of
    ``policy``; a send still failing after ``policy.max_attempts`` is dropped and logged.

    Held in memory only: a process that exits loses what it holds (the durable database queue is
    the answer to that).
    """

    #: About half an hour of retries, at most 10 s apart.
    DEFAULT_POLICY = RetryPolicy(max_attempts=200, base_delay=0.2, max_delay=10.0)

    def __init__(self, *, max_pending: int = 10_000, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.max_pending = max_pending
        self.policy = policy
        self.dropped = 0
        self._pending: collections.deque[_Pending] = collections.deque()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def __len__(self) -> int:
        with self._changed:
            return len(self._pending)

    def add(self, send: Callable[[], None], *, what: str) -> None:
        """Hold ``send`` until it succeeds; the oldest held send is dropped (logged) when full."""
        with self._changed:
            if len(self._pending) >= self.max_pending:
                lost = self._pending.popleft()
                self.dropped += 1
                logger.error("celery redelivery queue full: dropped %s", lost.what)
            self._pending.append(_Pending(send, what))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="cachewire-celery-redelivery", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is held; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Stop retrying; what is still held is dropped (logged)."""
        self._closing.set()
        with self._changed:
            for lost in self._pending:
                logger.error("celery redelivery closed: dropped %s", lost.what)
            self.dropped += len(self._pending)
            self._pending.clear()
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._pending or self._closing.is_set():
                    self._thread = None
                    return
                head = self._pending[0]
            try:
                head.send()
            except Exception as exc:
                failed = head.attempt
                head.attempt += 1
                if not self.policy.should_retry(failed):
                    self._forget(head)
                    self.dropped += 1
                    logger.error("celery redelivery gave up on %s: %s", head.what, exc)
                    continue
                if self._closing.wait(self.policy.delay_for(failed)):
                    return
                continue
            self._forget(head)
            logger.info("celery redelivery sent %s", head.what)

    def _forget(self, done: _Pending) -> None:
        # `add` may have dropped it meanwhile (queue full): remove this one, not the new head.
        with self._changed, contextlib.suppress(ValueError):
            self._pending.remove(done)
            self._changed.notify_all()
