"""Bridges to core names that are being introduced; each is one line to switch once they land."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cachewire.dispatch import resolve_raise_exception, run_rules
from cachewire.rules import encode_payload, get_rule
from cachewire.tasks import run_task

__all__ = ["RetryPolicy", "encode_rules", "raise_policy", "run_work"]


@attrs.frozen
class RetryPolicy:
    """Stand-in for ``cachewire.retry.RetryPolicy`` (same constructor and methods)."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def delay_for(self, attempt: int) -> float:
        delay: float = min(self.max_delay, self.base_delay * 2 ** max(attempt - 1, 0))
        if self.jitter:
            delay *= random.uniform(0.5, 1.0)
        return delay

    def should_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts


def encode_rules(
    rule_ids: Sequence[str], rule_kwargs: Mapping[str, Sequence[Mapping[str, Any]]]
) -> str:
    return encode_payload(rule_ids, rule_kwargs)


def raise_policy(rule_ids: Sequence[str], context: Mapping[str, Any], dispatcher_name: str) -> bool:
    if "raise_exception" in context:
        return bool(context["raise_exception"])
    return resolve_raise_exception([get_rule(r) for r in rule_ids], dispatcher_name)


def run_work(body: str | bytes, *, dispatcher_name: str) -> Any:
    text = body.decode() if isinstance(body, bytes) else body
    if text.lstrip().startswith('{"args"'):
        return run_task(text, raise_errors=True)
    run_rules(text, dispatcher_name=dispatcher_name)
    return None
