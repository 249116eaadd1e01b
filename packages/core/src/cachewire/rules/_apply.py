"""Apply rule work: invalidate what each rule maps to, with the one error policy.

`run_rules` and its async twin `arun_rules` share one generator of the work and differ only in
``await``. Worker entries (`cachewire.run_work`) and in-process dispatchers call them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cachewire.cache import strict_invalidations
from cachewire.dispatch import dispatch_stats, resolve_raise_exception
from cachewire.errors import UnknownRuleError
from cachewire.rules._rule import Rule, get_rule
from cachewire.wire import RuleWork, decode_rule_work

__all__ = ["arun_rules", "run_rules"]

logger = logging.getLogger("cachewire.dispatch")

RuleKwargsIn = Mapping[str, Sequence[Mapping[str, Any]]]


def _normalise(
    rule_ids: Sequence[str] | str | bytes | RuleWork, rule_kwargs: RuleKwargsIn | None
) -> tuple[Sequence[str], RuleKwargsIn, bool]:
    """Rule ids, their argument sets, and whether the producer's resolved policy was to raise
    (carried in the wire context, so producer and worker settings cannot disagree silently)."""
    if isinstance(rule_ids, str | bytes):
        rule_ids = decode_rule_work(rule_ids)
    if isinstance(rule_ids, RuleWork):
        return rule_ids.rule_ids, rule_ids.rule_kwargs, rule_ids.context.get("raise") is True
    return list(rule_ids), rule_kwargs or {}, False


def _unknown(rule_id: str, dispatcher_name: str, producer_raise: bool) -> None:
    dispatch_stats.bump("unknown_rules")
    logger.error(
        "unknown rule id %r received (dispatcher %r): deploy the same rules on producers and "
        "workers, and import the modules that declare them in the worker",
        rule_id,
        dispatcher_name,
    )
    if producer_raise or resolve_raise_exception([None], dispatcher_name):
        dispatch_stats.bump("rule_errors_raised")
        raise UnknownRuleError(f"no rule with id {rule_id!r} is registered in this process")


def _failed(rule: Rule, exc: Exception, dispatcher_name: str, producer_raise: bool) -> None:
    dispatch_stats.bump("rule_errors")
    logger.error("rule %r failed: %s", rule.id, exc, exc_info=exc)
    if producer_raise or resolve_raise_exception([rule], dispatcher_name):
        dispatch_stats.bump("rule_errors_raised")
        raise exc


def _invalidations(
    rule_ids: Sequence[str] | str | bytes | RuleWork,
    rule_kwargs: RuleKwargsIn | None,
    dispatcher_name: str,
) -> Iterator[tuple[Rule, Mapping[str, Any], bool]]:
    """Each (rule, arguments, producer's raise policy) to invalidate; unknown rule ids are
    reported on the way."""
    ids, kwargs_by_rule, producer_raise = _normalise(rule_ids, rule_kwargs)
    for rule_id in ids:
        rule = get_rule(rule_id)
        if rule is None:
            _unknown(rule_id, dispatcher_name, producer_raise)
            continue
        for kwargs in kwargs_by_rule.get(rule_id, ()):
            yield rule, kwargs, producer_raise


def run_rules(
    rule_ids: Sequence[str] | str | bytes | RuleWork,
    rule_kwargs: RuleKwargsIn | None = None,
    *,
    dispatcher_name: str = "inline",
) -> None:
    """Invalidate what the rules map to. ``rule_ids`` may also be encoded or decoded rule work.

    An error is logged and counted, and raised when the rule's error policy says so.
    """
    with strict_invalidations():
        for rule, kwargs, producer_raise in _invalidations(rule_ids, rule_kwargs, dispatcher_name):
            try:
                rule.apply(kwargs)
                dispatch_stats.bump("invalidations")
            except Exception as exc:
                _failed(rule, exc, dispatcher_name, producer_raise)


async def arun_rules(
    rule_ids: Sequence[str] | str | bytes | RuleWork,
    rule_kwargs: RuleKwargsIn | None = None,
    *,
    dispatcher_name: str = "asyncio",
) -> None:
    """Async twin of `run_rules`, using the cached functions' ``ainvalidate``."""
    with strict_invalidations():
        for rule, kwargs, producer_raise in _invalidations(rule_ids, rule_kwargs, dispatcher_name):
            try:
                await rule.aapply(kwargs)
                dispatch_stats.bump("invalidations")
            except Exception as exc:
                _failed(rule, exc, dispatcher_name, producer_raise)
