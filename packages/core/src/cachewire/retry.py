"""`RetryPolicy`: the backoff arithmetic the database queue and the broker adapters share."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from cachewire.errors import ConfigurationError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


def _positive(name: str, value: float, *, allow_zero: bool = True) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or math.isinf(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigurationError(f"RetryPolicy({name}={value!r}) must be a finite number >= 0")


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with full jitter, up to ``max_attempts`` runs in all.

    Attempt ``n`` (1 for the first run) that failed waits about ``base_delay * factor**(n-1)``
    seconds, capped at ``max_delay``, before attempt ``n + 1``. With ``jitter`` the wait is drawn
    uniformly between half of that and all of it, so workers that failed together do not retry
    together.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError(f"RetryPolicy(max_attempts={self.max_attempts!r}) must be int")
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy(max_attempts=...) must be at least 1")
        _positive("base_delay", self.base_delay)
        _positive("max_delay", self.max_delay)
        _positive("factor", self.factor, allow_zero=False)

    @classmethod
    def coerce(cls, value: RetryPolicy | Mapping[str, Any] | None, *, where: str) -> RetryPolicy:
        """A ``retry`` option as a policy: a policy as it is, a mapping as its arguments, None as
        the default policy. A mapping of unknown arguments is a `ConfigurationError` naming
        ``where`` the option was given."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        try:
            return cls(**value)
        except TypeError as exc:
            raise ConfigurationError(
                f"{where}: {value!r} is not RetryPolicy arguments "
                "(max_attempts, base_delay, factor, max_delay, jitter): "
                f"{exc}"
            ) from exc

    def should_retry(self, attempt: int) -> bool:
        """Whether a failure of run number ``attempt`` (1-based) gets another run."""
        return attempt < self.max_attempts

    def ceiling_for(self, attempt: int) -> float:
        """The wait after a failure of run ``attempt`` before jitter."""
        exponent = max(attempt - 1, 0)
        try:
            raw = self.base_delay * self.factor**exponent
        except OverflowError:
            return self.max_delay
        return min(raw, self.max_delay)

    def delay_for(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after a failure of run ``attempt`` (1-based) before the next run."""
        ceiling = self.ceiling_for(attempt)
        if not self.jitter:
            return ceiling
        draw = (rng or random).uniform(0.5, 1.0)
        return ceiling * draw

    def delays(self) -> list[float]:
        """The un-jittered waits between all runs (for runtimes that take a list, like RQ)."""
        return [self.ceiling_for(n) for n in range(1, self.max_attempts)]

    def call(
        self,
        func: Callable[[], T],
        *,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        sleep: Callable[[float], object] = time.sleep,
        on_retry: Callable[[int, BaseException, float], object] | None = None,
    ) -> T:
        """``func()``, run again after a failure in ``retry_on`` while `should_retry` allows,
        waiting `delay_for` between runs; the last failure is raised. ``on_retry(attempt, error,
        delay)`` is called before each wait (to log or count)."""
        attempt = 1
        while True:
            try:
                return func()
            except retry_on as exc:
                if not self.should_retry(attempt):
                    raise
                delay = self.delay_for(attempt)
                if on_retry is not None:
                    on_retry(attempt, exc, delay)
                sleep(delay)
                attempt += 1
