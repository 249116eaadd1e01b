"""System checks report configuration mistakes with cachewire.E00x ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from cachewire import Rule, cached
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
    @cached(name="checks.bad", partition=["x"])
    def target(x: int) -> int:
        return x

    rules = [
        Rule(model="testapp.Order", field_mapping={"x": "no_such_field"}, function="checks.bad"),
        Rule(model="testapp.Order", field_mapping={"x": "customer.nope"}, function="checks.bad"),
        Rule(model="nothere.Model", field_mapping={"x": "id"}, function="checks.bad"),
        Rule(model="testapp.Order", field_mapping={"x": "customer.name"}, function="checks.bad"),
    ]
    yield
    del rules


def test_rule_mistakes(bad_rules: None) -> None:
    messages = check_rules()
    text = "\n".join(f"{m.id} {m.msg}" for m in messages)
    assert "cachewire.E002" in text
    assert "'no_such_field'" in text
    assert "has no field or attribute 'nope'" in text
    assert "W001" in text and "customer.name" in text
    if "nothere.Model" in text:  # found only when the core lists every rule
        assert "cachewire.E003" in text
