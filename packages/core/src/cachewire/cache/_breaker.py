"""A circuit breaker and a rate-limited log for a cache backend that fails."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cachewire.cache._stats import CacheStats

__all__ = ["BackendSkipped", "CircuitBreaker"]

logger = logging.getLogger("cachewire.cache")


class BackendSkipped(Exception):
    """The breaker is open: the backend was not asked (it failed repeatedly just before)."""


class CircuitBreaker:
    """Skips a failing backend for ``cool_down`` seconds after ``threshold`` failures in a row.

    Closed: every call goes through. After ``threshold`` consecutive failures it opens (counted
    in ``breaker_opens``, logged at ERROR): calls are skipped at once, without I/O, until the
    cool-down ends; then one call at a time tries the backend again (half-open), and the first
    success closes it (logged at WARNING). ``threshold=0`` turns it off.

    Failures of a backend that is down are also logged, at most once per ``log_every`` seconds,
    with how many were not logged meanwhile.
    """

    def __init__(
        self,
        stats: CacheStats,
        *,
        name: str,
        threshold: int = 5,
        cool_down: float = 5.0,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._name = name
        self.threshold = threshold
        self.cool_down = cool_down
        self._log_every = log_every
        self._clock = clock
        self.failures = 0
        self._open_until = 0.0
        self._probing = False
        self._next_log = 0.0
        self._unlogged = 0

    @property
    def is_open(self) -> bool:
        return bool(self.threshold) and self.failures >= self.threshold

    def check(self) -> None:
        """Raise `BackendSkipped` while open and cooling down; let one probe through after."""
        if not self.failures or not self.is_open:
            return
        if self._clock() < self._open_until or self._probing:
            raise BackendSkipped(f"{self._name} is skipped after {self.failures} failures in a row")
        self._probing = True  # one caller tries; the others keep being skipped meanwhile

    def succeeded(self) -> None:
        if self.failures:
            if self.is_open:
                logger.warning(
                    "cachewire: %s answers again; the circuit breaker is closed", self._name
                )
            self.failures = 0
            self._probing = False

    def failed(self, exc: BaseException) -> None:
        """Count a failure (not a skip), open the breaker at the threshold, log rate-limited."""
        if isinstance(exc, BackendSkipped):
            return
        self.failures += 1
        self._probing = False
        if self.threshold and self.failures >= self.threshold:
            was_cooling = self._open_until > self._clock()
            self._open_until = self._clock() + self.cool_down
            if self.failures == self.threshold and not was_cooling:
                self._stats.breaker_opens += 1
                logger.error(
                    "cachewire: %s failed %d times in a row (%s); skipping it for %.1f s",
                    self._name,
                    self.failures,
                    exc,
                    self.cool_down,
                )
        now = self._clock()
        if now >= self._next_log:
            logger.warning(
                "cachewire: %s failed: %s: %s (%d more failures not logged since the last one)",
                self._name,
                type(exc).__name__,
                exc,
                self._unlogged,
            )
            self._next_log = now + self._log_every
            self._unlogged = 0
        else:
            self._unlogged += 1
