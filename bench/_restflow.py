"""drf-restflow's write side, set up the way its users run it, for bench/dispatch.py.

Django runs on an in-memory SQLite database and the local-memory cache. Each change goes through
`CacheRegister.invalidate_for_instance`, the call its post_save handler makes at commit, with the
inline dispatcher; each rule deletes the changed customer's entry of one cached function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
    )
    django.setup()
    _setup_done = True


def change_cost(rules: int, n: int) -> Callable[[], float]:
    """A function measuring µs per change event with ``rules`` rules on one model."""
    _setup()
    from django.db import models
    from restflow.caching import InvalidationRule, cache_result
    from restflow.caching.key_constructor import KeyConstructor
    from restflow.caching.key_fields import ArgsKeyField
    from restflow.caching.registry import CacheRegister

    order_model: Any = type(
        f"Order{rules}",
        (models.Model,),
        {
            "__module__": __name__,
            "customer_id": models.IntegerField(),
            "Meta": type("Meta", (), {"app_label": "contenttypes"}),
        },
    )

    class CustomerKey(KeyConstructor):  # type: ignore[misc]
        customer = ArgsKeyField("customer_id", partition=True)

    calls = [0]
    functions = []
    for index in range(rules):

        def orders(customer_id: int, index: int = index) -> list[int]:
            calls[0] += 1
            return [customer_id, index]

        orders.__name__ = orders.__qualname__ = f"orders_{rules}_{index}"
        rule = InvalidationRule(
            model=order_model, field_mapping={"customer_id": "customer_id"}, dispatcher="inline"
        )
        functions.append(
            cache_result(key_constructor=CustomerKey, ttl=300, invalidates_on=[rule])(orders)
        )

    order = order_model(id=1, customer_id=7)
    post_save = CacheRegister.SignalTypes.POST_SAVE
    for function in functions:
        function(7)
    CacheRegister.invalidate_for_instance(order, False, post_save)
    before = calls[0]
    for function in functions:
        function(7)
    if calls[0] - before != rules:
        raise SystemExit(f"drf-restflow: a change recomputed {calls[0] - before} of {rules}")

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(n):
            CacheRegister.invalidate_for_instance(order, False, post_save)
        return (time.perf_counter() - start) / n * 1e6

    return measure
