"""Worker entries every runtime calls: `run_rules` and its async twin `arun_rules`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cachewire.dispatch._policy import resolve_raise_exception
from cachewire.dispatch._stats import dispatch_stats
from cachewire.errors import UnknownRuleError

__all__ = ["arun_rules", "run_rules"]

logger = logging.getLogger("cachewire.dispatch")

RuleKwargsIn = Mapping[str, Sequence[Mapping[str, Any]]]


def _normalise(
    rule_ids: Sequence[str] | str | bytes, rule_kwargs: RuleKwargsIn | None
) -> tuple[list[str], RuleKwargsIn]:
    if isinstance(rule_ids, str | bytes):
        from cachewire.rules import decode_payload

        ids, kwargs, _ = decode_payload(rule_ids)
        return ids, kwargs
    return list(rule_ids), rule_kwargs or {}


def _unknown(rule_id: str, dispatcher_name: str) -> None:
    dispatch_stats.bump("unknown_rules")
    logger.error(
        "unknown rule id %r received (dispatcher %r): deploy the same rules on producers and "
        "workers",
        rule_id,
        dispatcher_name,
    )
    if resolve_raise_exception([None], dispatcher_name):
        dispatch_stats.bump("rule_errors_raised")
        raise UnknownRuleError(f"no rule with id {rule_id!r} is registered in this process")


def _failed(rule: Any, exc: Exception, dispatcher_name: str) -> None:
    dispatch_stats.bump("rule_errors")
    logger.error("rule %r failed: %s", rule.id, exc, exc_info=exc)
    if resolve_raise_exception([rule], dispatcher_name):
        dispatch_stats.bump("rule_errors_raised")
        raise exc


def _invalidations(
    rule_ids: Sequence[str] | str | bytes, rule_kwargs: RuleKwargsIn | None, dispatcher_name: str
) -> Iterator[tuple[Any, Mapping[str, Any]]]:
    """Each (rule, arguments) to invalidate; unknown rule ids are reported on the way."""
    from cachewire.rules import get_rule

    ids, kwargs_by_rule = _normalise(rule_ids, rule_kwargs)
    for rule_id in ids:
        rule = get_rule(rule_id)
        if rule is None:
            _unknown(rule_id, dispatcher_name)
            continue
        for kwargs in kwargs_by_rule.get(rule_id, ()):
            yield rule, kwargs


def run_rules(
    rule_ids: Sequence[str] | str | bytes,
    rule_kwargs: RuleKwargsIn | None = None,
    *,
    dispatcher_name: str = "inline",
    **context: Any,
) -> None:
    """Invalidate what the rules map to. ``rule_ids`` may also be an encoded payload."""
    for rule, kwargs in _invalidations(rule_ids, rule_kwargs, dispatcher_name):
        try:
            rule.apply(kwargs)
            dispatch_stats.bump("invalidations")
        except Exception as exc:
            _failed(rule, exc, dispatcher_name)


async def arun_rules(
    rule_ids: Sequence[str] | str | bytes,
    rule_kwargs: RuleKwargsIn | None = None,
    *,
    dispatcher_name: str = "asyncio",
    **context: Any,
) -> None:
    """Async twin of `run_rules`, using the cached functions' ``ainvalidate``."""
    for rule, kwargs in _invalidations(rule_ids, rule_kwargs, dispatcher_name):
        try:
            await rule.aapply(kwargs)
            dispatch_stats.bump("invalidations")
        except Exception as exc:
            _failed(rule, exc, dispatcher_name)
