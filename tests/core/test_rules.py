from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest

from cachewire import errors
from cachewire.dispatch import dispatch_stats
from cachewire.rules import Rule, changed, collect, get_rule, model_label


@attrs.define
class Order:
    id: int
    customer_id: int
    region: str = "eu"


@pytest.fixture
def make_target(recording_target: Any) -> Any:
    def make(partition: tuple[str, ...] = ("customer_id",)) -> Any:
        return recording_target("shop.orders", ("customer_id", "page"), partition)

    return make


def test_rule_id_is_stable_and_independent_of_declaration_order(make_target: Any) -> None:
    a = Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=make_target())
    first = a.id
    assert first.startswith("shop.orders@") and "Order" in first
    # The same declaration evaluated again (a reload) gets the same id and replaces the old one.
    b = Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=make_target())
    assert b.id == first
    assert get_rule(first) is b


def test_two_different_rules_with_one_name_are_an_error(make_target: Any) -> None:
    Rule(
        model=Order, field_mapping={"customer_id": "customer_id"}, name="x", function=make_target()
    )
    with pytest.raises(errors.DuplicateRuleError, match="'x'"):
        Rule(
            model="other.Model",
            field_mapping={"customer_id": "id"},
            name="x",
            function=make_target(),
        )


def test_unknown_dispatcher_name_fails_at_definition_listing_known_names() -> None:
    with pytest.raises(errors.ConfigurationError, match=r"known: .*inline.*threadpool"):
        Rule(model=Order, field_mapping={"customer_id": "customer_id"}, dispatcher="nope")


def test_mapping_to_a_missing_parameter_fails_at_definition(make_target: Any) -> None:
    with pytest.raises(errors.ConfigurationError, match="no parameter"):
        Rule(model=Order, field_mapping={"user": "customer_id"}, function=make_target())


def test_model_label_prefers_django_style_meta_label() -> None:
    class Meta:
        label = "shop.Order"

    class WithMeta:
        _meta = Meta

    assert model_label(WithMeta) == "shop.Order"
    assert model_label("a.B") == "a.B"
    assert model_label(Order).endswith("test_rules.Order")


def test_changed_invalidates_new_and_old_partition(make_target: Any) -> None:
    target = make_target()
    Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=target)
    changed(Order, Order(id=1, customer_id=8), old={"customer_id": 7})
    assert sorted(c["customer_id"] for c in target.calls) == [7, 8]


def test_changed_reads_dotted_paths_and_old_objects(recording_target: Any) -> None:
    target = recording_target("shop.by_region", ("region",), ("region",))

    @attrs.define
    class Line:
        order: Order

    Rule(model="shop.Line", field_mapping={"region": "order.region"}, function=target)
    changed("shop.Line", Line(Order(1, 2, "us")), old=Line(Order(1, 2, "eu")))
    assert sorted(c["region"] for c in target.calls) == ["eu", "us"]


def test_collect_sends_identical_invalidations_once(make_target: Any) -> None:
    target = make_target()
    Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=target)
    with collect():
        for order_id in range(5):
            changed(Order, Order(id=order_id, customer_id=3))
        assert target.calls == []  # nothing is sent before the block ends
    assert target.calls == [{"customer_id": 3}]


def test_collect_keeps_equal_values_of_different_types_apart(make_target: Any) -> None:
    target = make_target()
    Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=target)
    uid = uuid.UUID(int=3)
    with collect():
        for value in (1, True, 1, "1", True, uid, uuid.UUID(int=3)):
            changed(Order, Order(id=0, customer_id=value))
    # 1, True and "1" name different partitions (their cache keys differ); repeats collapse.
    assert target.calls == [
        {"customer_id": 1},
        {"customer_id": True},
        {"customer_id": "1"},
        {"customer_id": uid},
    ]


def test_collect_discards_work_when_the_block_raises(make_target: Any) -> None:
    target = make_target()
    Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=target)
    with pytest.raises(RuntimeError), collect():
        changed(Order, Order(id=1, customer_id=3))
        raise RuntimeError("rolled back")
    assert target.calls == []


def test_nested_collect_joins_the_outer_block(make_target: Any) -> None:
    target = make_target()
    Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=target)
    with collect():
        with collect():
            changed(Order, Order(id=1, customer_id=3))
        assert target.calls == []
    assert target.calls == [{"customer_id": 3}]


def test_unencodable_argument_is_an_error_at_dispatch_time_naming_rule_and_argument(
    make_target: Any,
) -> None:
    target = make_target()
    rule = Rule(model=Order, field_mapping={"customer_id": "customer_id"}, function=target)
    with pytest.raises(errors.PayloadError, match=rf"{rule.id!r} argument 'customer_id'"):
        changed(Order, Order(id=1, customer_id=object()))  # type: ignore[arg-type]


def test_encodable_special_values_reach_the_target_unchanged(make_target: Any) -> None:
    target = make_target()
    Rule(model="m", field_mapping={"customer_id": "v"}, function=target)
    values = [uuid.uuid4(), Decimal("1.10")]
    for value in values:
        changed("m", {"v": value})
    assert [c["customer_id"] for c in target.calls] == values
    assert dispatch_stats.snapshot()["invalidations"] == 2
