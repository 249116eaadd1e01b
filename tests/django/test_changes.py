"""Changes without signals, the error policy, settings and async saves."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_init
from django.test import override_settings
from testapp.models import Customer, Order, Plain, Watched

import cachewire_django
from cachewire import get_settings
from cachewire.dispatch import dispatch_stats
from cachewire.errors import DispatchError
from cachewire_django.wiring import SNAPSHOT
from conftest import RecordingDispatcher, invalidated

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_changed_covers_bulk_create_and_bulk_update(recorded: Any) -> None:
    a = Customer.objects.create(name="a")
    b = Customer.objects.create(name="b")
    recorded.clear()
    orders = Order.objects.bulk_create([Order(customer=a), Order(customer=a)])
    assert recorded == []  # Django sends no signal
    with transaction.atomic():
        assert cachewire_django.changed(orders) == 4
    assert {kw for name, kw in invalidated(recorded) if name == "orders_of"} == {
        (("customer_id", a.pk),)
    }
    loaded = list(Order.objects.all())
    for order in loaded:
        order.customer = b
    Order.objects.bulk_update(loaded, ["customer"])
    recorded.clear()
    cachewire_django.changed(loaded)
    assert {kw for name, kw in invalidated(recorded) if name == "orders_of"} == {
        (("customer_id", a.pk),),
        (("customer_id", b.pk),),
    }


def test_track_covers_update_and_delete_of_a_queryset(recorded: Any) -> None:
    a = Customer.objects.create(name="a")
    b = Customer.objects.create(name="b")
    Order.objects.create(customer=a)
    recorded.clear()
    with cachewire_django.track(Order.objects.filter(customer=a)) as orders:
        orders.update(customer=b)
    assert {kw for name, kw in invalidated(recorded) if name == "orders_of"} == {
        (("customer_id", a.pk),),
        (("customer_id", b.pk),),
    }
    recorded.clear()
    with cachewire_django.track(Order.objects.all()) as orders:
        orders.delete()  # a queryset delete does send post_delete per row
    assert ("orders_of", (("customer_id", b.pk),)) in invalidated(recorded)


def test_track_of_a_failing_block_queues_nothing(recorded: Any) -> None:
    a = Customer.objects.create(name="a")
    Order.objects.create(customer=a)
    recorded.clear()
    with pytest.raises(ZeroDivisionError), cachewire_django.track(Order.objects.all()):
        1 / 0  # noqa: B018
    assert recorded == []


def test_a_dispatch_error_never_escapes_save(caplog: pytest.LogCaptureFixture) -> None:
    """drf-restflow bug 3.3.8: a broker error escaped save()."""
    customer = Customer.objects.create(name="c")
    RecordingDispatcher.fail_with = ConnectionError("broker down")
    Order.objects.create(customer=customer)  # outside a transaction
    with transaction.atomic():
        Order.objects.create(customer=customer)
    assert Order.objects.count() == 2
    assert dispatch_stats.snapshot()["dispatch_errors"] >= 2
    assert "broker down" in caplog.text


def test_the_raise_policy_makes_save_raise_outside_a_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = Customer.objects.create(name="c")
    RecordingDispatcher.fail_with = ConnectionError("broker down")
    with override_settings(
        CACHEWIRE={"DEFAULT_DISPATCHER": "recording", "DISPATCHER_RAISE_EXCEPTION": True}
    ):
        with pytest.raises(DispatchError, match="broker down"):
            Order.objects.create(customer=customer)
        # After a commit the data change is done: Django's robust on-commit logs the error.
        with caplog.at_level(logging.ERROR), transaction.atomic():
            Order.objects.create(customer=customer)
    assert "broker down" in caplog.text
    assert Order.objects.count() == 2


def test_settings_are_reloaded_on_setting_changed() -> None:
    assert get_settings().default_dispatcher == "recording"
    with override_settings(
        CACHEWIRE={"DEFAULT_DISPATCHER": "inline", "DISPATCHER_SETTINGS": {"inline": {}}}
    ):
        assert get_settings().default_dispatcher == "inline"
        assert get_settings().dispatcher_settings == {"inline": {}}
    assert get_settings().default_dispatcher == "recording"


def test_models_without_rules_capture_nothing() -> None:
    assert not post_init.has_listeners(Plain)
    assert post_init.has_listeners(Watched)
    Plain.objects.create(value=1)
    Watched.objects.create(value=1, label="x")
    assert SNAPSHOT not in Plain.objects.get().__dict__
    # Only the fields the rules read are kept.
    assert Watched.objects.get().__dict__[SNAPSHOT] == {"label": "x"}


async def test_asave_reaches_the_asyncio_dispatcher_on_the_running_loop() -> None:
    from cachewire.dispatchers import AsyncIODispatcher

    customer = await Customer.objects.acreate(name="c")
    loops: list[Any] = []
    original = AsyncIODispatcher.dispatch

    def spy(self: Any, **kwargs: Any) -> None:
        loops.append(kwargs["context"].loop)
        original(self, **kwargs)

    with override_settings(CACHEWIRE={"DEFAULT_DISPATCHER": "asyncio"}):
        AsyncIODispatcher.dispatch = spy  # type: ignore[method-assign]
        try:
            await Order.objects.acreate(customer=customer)
            await AsyncIODispatcher.drain()
        finally:
            AsyncIODispatcher.dispatch = original  # type: ignore[method-assign]
    assert loops
    assert all(loop is asyncio.get_running_loop() for loop in loops)
    assert dispatch_stats.snapshot()["invalidations"] >= 2
