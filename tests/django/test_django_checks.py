"""System checks report configuration mistakes with cachewire.E00x ids."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from cwdj_support import restore_test_app_rules
from django.core import checks
from django.test import override_settings

from cachewire import Rule, cached
from cachewire.rules import unregister_all
from cachewire_django.checks import PROVIDERS, check_rules, check_settings


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_a_clean_project_passes() -> None:
    assert [m for m in checks.run_checks(tags=["cachewire"]) if m.is_serious()] == []


@pytest.mark.parametrize(
    ("value", "expected", "text"),
    [
        ({"DEFAULT_DISPATCHER": "nope"}, "cachewire.E001", "known dispatchers"),
        ({"DEFAULT_DISPATCHER": "elsewhere"}, "cachewire.E004", "install cachewire-elsewhere"),
        ({"DISPATCHER_SETTINGS": {"elsewhere": {}}}, "cachewire.E004", "cachewire-elsewhere"),
        ({"DEFAULT_CACHE": "missing"}, "cachewire.E005", "defined caches: default"),
        ({"DEFAUT_DISPATCHER": "inline"}, "cachewire.E006", "known keys"),
        ({"SKIP_RAW": "yes"}, "cachewire.E006", "must be bool"),
    ],
)
def test_settings_mistakes(
    value: dict[str, Any], expected: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider that is never installed: the adapters of this repository all are, in its env.
    monkeypatch.setitem(PROVIDERS, "elsewhere", "cachewire-elsewhere")
    with override_settings(CACHEWIRE=value):
        messages = check_settings()
    assert expected in ids(messages)
    assert any(text in (m.msg + " " + (m.hint or "")) for m in messages)


@pytest.fixture
def bad_rules() -> Iterator[None]:
    """Mistakes in a ``cachewire`` module of its own; forgotten afterwards."""
    module = types.ModuleType("mistakes.cachewire")

    @cached(name="checks.bad", partition=["x"])
    def target(x: int) -> int:
        return x

    module.target = target  # type: ignore[attr-defined]
    for mapping, model in [
        ({"x": "no_such_field"}, "testapp.Note"),
        ({"x": "customer.nope"}, "testapp.Note"),
        ({"x": "customer.name"}, "testapp.Note"),
        ({"x": "id"}, "nothere.Model"),
    ]:
        target.rules += (Rule(model=model, field_mapping=mapping, function="checks.bad"),)
    sys.modules[module.__name__] = module
    yield
    del sys.modules[module.__name__]
    unregister_all()
    restore_test_app_rules(force=True)


def test_rule_mistakes(bad_rules: None) -> None:
    messages = check_rules()
    text = "\n".join(f"{m.id} {m.msg}" for m in messages)
    assert "cachewire.E002" in text
    assert "'no_such_field'" in text
    assert "has no field or attribute 'nope'" in text
    assert "W001" in text and "customer.name" in text
    assert "cachewire.E003" in text and "'nothere.Model'" in text
