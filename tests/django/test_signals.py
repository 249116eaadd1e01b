"""Model changes become invalidations at commit, on the alias of the save."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from testapp.cachewire import CALLS, orders_of, places_in, post_page, posts_with_tag, totals_of
from testapp.models import Customer, Order, Place, Post, Restaurant, RushOrder, Tag

from conftest import RecordingDispatcher, all_aliases, invalidated

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture(params=all_aliases())
def using(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_order(using: str, **fields: Any) -> Order:
    customer = Customer.objects.using(using).create(name="c")
    return Order.objects.using(using).create(customer=customer, **fields)


def test_save_outside_a_transaction_invalidates_at_once(using: str, recorded: Any) -> None:
    order = make_order(using)
    assert invalidated(recorded) == {
        ("orders_of", (("customer_id", order.customer_id),)),
        ("totals_of", (("customer_id", order.customer_id),)),
    }


def test_the_cached_value_is_computed_again(using: str) -> None:
    order = make_order(using)
    CALLS.clear()
    orders_of(order.customer_id)
    orders_of(order.customer_id)
    assert CALLS["orders_of"] == 1
    order.status = "paid"
    order.save(using=using)
    orders_of(order.customer_id)
    assert CALLS["orders_of"] == 2


def test_commit_sends_once_per_dispatcher_group(using: str, recorded: Any) -> None:
    customer = Customer.objects.using(using).create(name="c")
    with transaction.atomic(using=using):
        for _ in range(5):
            Order.objects.using(using).create(customer=customer)
        assert recorded == []
    assert len(recorded) == 1
    assert [c.using for c in RecordingDispatcher.contexts] == [using]
    assert RecordingDispatcher.contexts[0].origin == "django"
    assert invalidated(recorded) == {
        ("orders_of", (("customer_id", customer.pk),)),
        ("totals_of", (("customer_id", customer.pk),)),
    }


def test_rollback_sends_nothing(using: str, recorded: Any) -> None:
    customer = Customer.objects.using(using).create(name="c")
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=using):
        Order.objects.using(using).create(customer=customer)
        1 / 0  # noqa: B018
    assert recorded == []


def test_savepoint_rollback_drops_only_its_work(using: str, recorded: Any) -> None:
    a = Customer.objects.using(using).create(name="a")
    b = Customer.objects.using(using).create(name="b")
    c = Customer.objects.using(using).create(name="c")
    with transaction.atomic(using=using):
        Order.objects.using(using).create(customer=a)
        with pytest.raises(ZeroDivisionError), transaction.atomic(using=using):
            Order.objects.using(using).create(customer=b)
            1 / 0  # noqa: B018
        with transaction.atomic(using=using):
            Order.objects.using(using).create(customer=c)
            Order.objects.using(using).create(customer=a)
    ids = {kwargs for name, kwargs in invalidated(recorded) if name == "orders_of"}
    assert ids == {(("customer_id", a.pk),), (("customer_id", c.pk),)}
    # Each invalidation is sent once, whatever savepoint level queued it: 2 rules x 2 customers.
    per_rule = [len(v) for _, rule_kwargs in recorded for v in rule_kwargs.values()]
    assert sum(per_rule) == 4


def test_rollback_of_an_outer_block_drops_committed_savepoints(using: str, recorded: Any) -> None:
    customer = Customer.objects.using(using).create(name="c")
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=using):
        with transaction.atomic(using=using):
            Order.objects.using(using).create(customer=customer)
        1 / 0  # noqa: B018
    assert recorded == []


def test_a_transaction_on_another_alias_does_not_hold_the_work(recorded: Any) -> None:
    """drf-restflow bug 3.3.8: on_commit on the default alias instead of the save's."""
    customer = Customer.objects.using("default").create(name="c")
    recorded.clear()
    with transaction.atomic(using="pg"):
        Order.objects.using("default").create(customer=customer)
        # The save was on "default", outside a transaction there: sent already.
        assert invalidated(recorded) != set()


@pytest.mark.postgres
def test_work_waits_for_the_commit_of_its_own_alias(recorded: Any) -> None:
    customer = Customer.objects.using("pg").create(name="c")
    recorded.clear()
    with transaction.atomic(using="pg"):
        with transaction.atomic(using="default"):
            Order.objects.using("pg").create(customer=customer)
        assert recorded == []  # the default alias committed; the pg transaction has not
    assert invalidated(recorded) != set()


def test_moving_a_row_invalidates_both_partitions(using: str, recorded: Any) -> None:
    """drf-restflow bug 3.3.5: only the new partition was invalidated."""
    order = make_order(using)
    other = Customer.objects.using(using).create(name="other")
    old_customer = order.customer_id
    loaded = Order.objects.using(using).get(pk=order.pk)
    recorded.clear()
    loaded.customer = other
    loaded.save()
    assert invalidated(recorded) == {
        ("orders_of", (("customer_id", old_customer),)),
        ("orders_of", (("customer_id", other.pk),)),
        ("totals_of", (("customer_id", old_customer),)),
        ("totals_of", (("customer_id", other.pk),)),
    }


def test_moving_a_row_loaded_with_the_field_deferred(using: str, recorded: Any) -> None:
    order = make_order(using)
    other = Customer.objects.using(using).create(name="other")
    old_customer = order.customer_id
    loaded = Order.objects.using(using).only("status").get(pk=order.pk)
    recorded.clear()
    loaded.customer_id = other.pk
    loaded.save()
    names = {kw for name, kw in invalidated(recorded) if name == "orders_of"}
    assert names == {(("customer_id", old_customer),), (("customer_id", other.pk),)}


def test_second_save_compares_with_the_first(using: str, recorded: Any) -> None:
    order = make_order(using)
    b = Customer.objects.using(using).create(name="b")
    c = Customer.objects.using(using).create(name="c")
    order.customer = b
    order.save()
    recorded.clear()
    order.customer = c
    order.save()
    names = {kw for name, kw in invalidated(recorded) if name == "orders_of"}
    assert names == {(("customer_id", b.pk),), (("customer_id", c.pk),)}


def test_delete_invalidates(using: str, recorded: Any) -> None:
    order = make_order(using)
    recorded.clear()
    order.delete()
    assert ("orders_of", (("customer_id", order.customer_id),)) in invalidated(recorded)


def test_proxy_saves_fire_the_concrete_models_rules(using: str, recorded: Any) -> None:
    """drf-restflow: saves through a proxy class sent the proxy and skipped the rules."""
    customer = Customer.objects.using(using).create(name="c")
    recorded.clear()
    RushOrder.objects.using(using).create(customer=customer)
    assert ("orders_of", (("customer_id", customer.pk),)) in invalidated(recorded)


def test_multi_table_children_fire_the_parents_rules(using: str, recorded: Any) -> None:
    Restaurant.objects.using(using).create(city="Oslo", cuisine="fish")
    assert ("places_in", (("city", "Oslo"),)) in invalidated(recorded)
    restaurant = Restaurant.objects.using(using).get()
    recorded.clear()
    restaurant.city = "Bergen"
    restaurant.save()
    assert {kw for name, kw in invalidated(recorded)} == {
        (("city", "Oslo"),),
        (("city", "Bergen"),),
    }
    place = Place.objects.using(using).get()
    CALLS.clear()
    places_in("Bergen")
    place.city = "Oslo"
    place.save()
    places_in("Bergen")
    assert CALLS["places_in"] == 2


def test_m2m_changes(using: str, recorded: Any) -> None:
    """drf-restflow: m2m_changed was not wired."""
    post = Post.objects.using(using).create(title="p")
    red = Tag.objects.using(using).create(name="red")
    blue = Tag.objects.using(using).create(name="blue")
    recorded.clear()
    post.tags.add(red, blue)
    assert invalidated(recorded) == {
        ("post_page", (("post_id", post.pk),)),
        ("posts_with_tag", (("tag_id", red.pk),)),
        ("posts_with_tag", (("tag_id", blue.pk),)),
    }
    recorded.clear()
    red.posts.remove(post)  # from the other side
    assert invalidated(recorded) == {
        ("post_page", (("post_id", post.pk),)),
        ("posts_with_tag", (("tag_id", red.pk),)),
    }
    recorded.clear()
    post.tags.clear()
    assert invalidated(recorded) == {
        ("post_page", (("post_id", post.pk),)),
        ("posts_with_tag", (("tag_id", blue.pk),)),
    }
    CALLS.clear()
    posts_with_tag(blue.pk)
    post_page(post.pk)
    post.tags.add(blue)
    posts_with_tag(blue.pk)
    post_page(post.pk)
    assert CALLS == {"posts_with_tag": 2, "post_page": 2}


def test_fixture_loading_is_skipped(using: str, recorded: Any) -> None:
    customer = Customer.objects.using(using).create(name="c")
    recorded.clear()
    order = Order(customer=customer)
    order.save_base(raw=True, using=using)
    assert recorded == []


def test_a_foreign_key_target_path_reads_without_a_query(
    using: str, django_assert_num_queries: Any
) -> None:
    order = make_order(using)
    loaded = Order.objects.using(using).get(pk=order.pk)
    CALLS.clear()
    totals_of(order.customer_id)
    loaded.total = 5
    with django_assert_num_queries(1, using=using):
        loaded.save()  # the UPDATE only: "customer.pk" is read from customer_id
    totals_of(order.customer_id)
    assert CALLS["totals_of"] == 2
