"""Reading a change: objects and mappings alike, old values by path or attribute, loud misses."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest

from cachewire import errors
from cachewire.dispatch import dispatch_stats
from cachewire.rules import Rule, changed


@attrs.define
class Customer:
    id: int
    region: str = "eu"


@attrs.define
class Order:
    id: int
    customer: Customer | None


@pytest.fixture
def target(recording_target: Any) -> Any:
    return recording_target("shop.by_customer", ("customer_id",), ("customer_id",))


@pytest.fixture
def rule(target: Any) -> Rule:
    return Rule(model="shop.Order", field_mapping={"customer_id": "customer.id"}, function=target)


@pytest.mark.usefixtures("rule")
@pytest.mark.parametrize(
    "change",
    [
        Order(1, Customer(5)),
        {"id": 1, "customer": {"id": 5}},
        {"id": 1, "customer": Customer(5)},
        Order(1, {"id": 5}),  # type: ignore[arg-type]
    ],
    ids=["object", "mapping", "mapping-of-object", "object-of-mapping"],
)
def test_a_dotted_path_reads_the_same_on_objects_and_mappings(target: Any, change: Any) -> None:
    changed("shop.Order", change)
    assert target.calls == [{"customer_id": 5}]


@pytest.mark.usefixtures("rule")
def test_a_none_on_the_path_reads_as_none(target: Any) -> None:
    changed("shop.Order", Order(1, None))
    changed("shop.Order", {"id": 1, "customer": None})
    assert target.calls == [{"customer_id": None}, {"customer_id": None}]


@pytest.mark.parametrize(
    "change",
    [Order(1, Customer(5)), {"id": 1, "customer": {"id": 5}}],
    ids=["object", "mapping"],
)
def test_a_missing_attribute_names_the_rule_the_model_and_the_path(
    recording_target: Any, change: Any
) -> None:
    target = recording_target("shop.by_customer", ("customer_id",), ("customer_id",))
    rule = Rule(model="shop.Order", field_mapping={"customer_id": "customer.pk"}, function=target)
    with pytest.raises(errors.RulePathError) as raised:
        changed("shop.Order", change)
    message = str(raised.value)
    assert rule.id in message
    assert "'shop.Order'" in message
    assert "'customer.pk'" in message
    assert "'pk'" in message
    assert isinstance(raised.value, errors.ConfigurationError)
    assert not isinstance(raised.value, AttributeError)
    assert target.calls == []


def test_a_misspelt_top_level_attribute_is_an_error_too(recording_target: Any) -> None:
    target = recording_target("shop.by_customer", ("customer_id",), ("customer_id",))
    Rule(model="shop.Order", field_mapping={"customer_id": "custmer.id"}, function=target)
    with pytest.raises(errors.RulePathError, match=r"no attribute 'custmer'"):
        changed("shop.Order", Order(1, Customer(5)))


@pytest.mark.usefixtures("rule")
@pytest.mark.parametrize(
    "old",
    [
        {"customer.id": 4},  # the mapping's own path
        {"customer": Customer(4)},  # the attribute name, holding the old object
        {"customer": {"id": 4}},  # the attribute name, holding a mapping
        Order(1, Customer(4)),  # the old object
    ],
    ids=["path", "attribute-object", "attribute-mapping", "object"],
)
def test_old_values_are_read_by_path_or_by_attribute_name(target: Any, old: Any) -> None:
    changed("shop.Order", Order(1, Customer(5)), old=old)
    assert sorted(call["customer_id"] for call in target.calls) == [4, 5]


@pytest.mark.usefixtures("rule")
def test_old_values_that_do_not_name_the_path_mean_it_did_not_change(target: Any) -> None:
    assert changed("shop.Order", Order(1, Customer(5)), old={"status": "new"}) == 1
    assert target.calls == [{"customer_id": 5}]


@pytest.mark.usefixtures("rule")
def test_a_missing_attribute_in_the_old_values_is_named(target: Any) -> None:
    with pytest.raises(errors.RulePathError, match=r"the old values has no key 'id'"):
        changed("shop.Order", Order(1, Customer(5)), old={"customer": {"pk": 4}})


def test_a_model_no_rule_knows_is_reported_once_and_counted(
    target: Any, rule: Rule, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cachewire.rules"):
        assert changed("shop.Ordre", Order(1, Customer(5))) == 0
        assert changed("shop.Ordre", Order(2, Customer(5))) == 0
        assert changed("shop.Other", {}) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'shop.Ordre'" in warnings[0] and "did you mean 'shop.Order'" in warnings[0]
    assert "'shop.Other'" in warnings[1]
    assert dispatch_stats.snapshot()["unknown_models"] == 3
    assert target.calls == []
    # The known model is not reported.
    caplog.clear()
    changed("shop.Order", Order(1, Customer(5)))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_changed_rejects_an_unknown_event(rule: Rule) -> None:
    with pytest.raises(errors.ConfigurationError, match="'created'"):
        changed("shop.Order", Order(1, Customer(5)), event="created")
