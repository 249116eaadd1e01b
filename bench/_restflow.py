"""drf-restflow's write side, set up the way its users run it, for bench/dispatch.py.

Django runs on an in-memory SQLite database and the local-memory cache. Each change goes through
`CacheRegister.invalidate_for_instance`, the call its post_save handler makes at commit; each rule
deletes the changed customer's entry of one cached function. Every setup is checked: a change must
make every rule's function compute again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from _common import CountingSetup

_setup_done = False


def _setup() -> None:
    global _setup_done
    if _setup_done:
        return
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "restflow.caching"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        # Room for every entry the checks prime: the default (300) would cull them.
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 1_000_000},
            }
        },
        USE_TZ=True,
    )
    django.setup()
    _setup_done = True


class _Setup(CountingSetup):
    """``rules`` cached functions of the customer, each with one rule on a model of its own."""

    library = "drf-restflow"

    def __init__(self, label: str, rules: int, dispatcher: str, config: dict[str, Any]) -> None:
        super().__init__()
        _setup()
        from django.db import models
        from restflow.caching import InvalidationRule, cache_result
        from restflow.caching.key_constructor import KeyConstructor
        from restflow.caching.key_fields import ArgsKeyField
        from restflow.caching.registry import CacheRegister

        self.model: Any = type(
            f"Order{label}",
            (models.Model,),
            {
                "__module__": __name__,
                "customer_id": models.IntegerField(),
                "Meta": type("Meta", (), {"app_label": "contenttypes"}),
            },
        )

        class CustomerKey(KeyConstructor):
            customer = ArgsKeyField("customer_id", partition=True)

        for index in range(rules):

            def orders(customer_id: int, index: int = index) -> list[int]:
                self.calls += 1
                return [customer_id, index]

            orders.__name__ = orders.__qualname__ = f"orders_{label}_{index}"
            rule = InvalidationRule(
                model=self.model,
                field_mapping={"customer_id": "customer_id"},
                dispatcher=dispatcher,
                dispatcher_config=config,
            )
            self.functions.append(
                cache_result(key_constructor=CustomerKey, ttl=300, invalidates_on=[rule])(orders)
            )
        self._invalidate = CacheRegister.invalidate_for_instance
        self._post_save = CacheRegister.SignalTypes.POST_SAVE

    def orders(self, count: int) -> list[Any]:
        return [self.model(id=i + 1, customer_id=i) for i in range(count)]

    def change(self, order: Any) -> None:
        self._invalidate(order, False, self._post_save)


def change_cost(rules: int, events: int) -> Callable[[], float]:
    """A function measuring µs per change event (``events`` distinct customers) on ``inline``."""
    peer = _Setup(f"Inline{rules}", rules, "inline", {})
    orders = peer.orders(events)
    peer.prime([0])
    peer.change(orders[0])
    peer.check_recomputes([0], f"inline, {rules} rule(s)")

    def measure() -> float:
        change = peer.change
        start = time.perf_counter()
        for order in orders:
            change(order)
        return (time.perf_counter() - start) / events * 1e6

    return measure


def throughput(
    dispatcher: str, events: int, workers: int
) -> Callable[[], Coroutine[Any, Any, float]]:
    """A coroutine function measuring change events per second through ``dispatcher`` (1 rule),
    from the first change until every rule has run."""
    from restflow.caching.dispatchers.asyncio import AsyncIODispatcher
    from restflow.caching.dispatchers.threadpool import ThreadPoolDispatcher

    config = {"max_workers": workers} if dispatcher == "threadpool" else {}
    peer = _Setup(f"Throughput{dispatcher.title()}", 1, dispatcher, config)
    orders = peer.orders(events)
    sample = [order.customer_id for order in orders[:: max(events // 50, 1)]] + [events - 1]

    async def wait_idle() -> None:
        # drf-restflow offers no way to wait for its dispatchers: wait for what they hold.
        if dispatcher == "asyncio":
            while AsyncIODispatcher._pending_tasks:
                await asyncio.gather(*list(AsyncIODispatcher._pending_tasks))
        elif dispatcher == "threadpool":
            pool = ThreadPoolDispatcher._executor
            if pool is not None:
                pool.shutdown(wait=True)  # the next dispatch builds a new pool
                ThreadPoolDispatcher._executor = None

    async def measure() -> float:
        peer.prime(sample)
        change = peer.change
        start = time.perf_counter()
        for order in orders:
            change(order)
        await wait_idle()
        elapsed = time.perf_counter() - start
        peer.check_recomputes(sample, f"{dispatcher} throughput")
        return events / elapsed

    return measure
