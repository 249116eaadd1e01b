"""Write side: rules that turn data changes into cache invalidations."""

from __future__ import annotations

from cachewire.rules._apply import arun_rules, run_rules
from cachewire.rules._changes import ChangeBatch, changed, collect, current_batch, work_identity
from cachewire.rules._rule import (
    EVENTS,
    InvalidationRule,
    OldValues,
    Rule,
    get_rule,
    model_label,
    rules_for_model,
    unregister_all,
)

__all__ = [
    "EVENTS",
    "ChangeBatch",
    "InvalidationRule",
    "OldValues",
    "Rule",
    "arun_rules",
    "changed",
    "collect",
    "current_batch",
    "get_rule",
    "model_label",
    "rules_for_model",
    "run_rules",
    "unregister_all",
    "work_identity",
]
