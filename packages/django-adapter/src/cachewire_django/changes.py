"""Changes Django sends no signal for: ``QuerySet.update()``, ``bulk_create``, ``bulk_update``,
a queryset's ``delete()`` and raw SQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import models, router

from cachewire_django.transaction import submit
from cachewire_django.wiring import SNAPSHOT, plan_for, snapshot, work_for

__all__ = ["changed", "track"]


def changed(
    instances: models.Model | Iterable[models.Model],
    *,
    using: str | None = None,
) -> int:
    """Invalidate what the rules map these saved or deleted instances to, at the commit of
    ``using``'s transaction (the model's write database by default), or at once outside one.

    Values captured when an instance was loaded count too, so an instance changed by
    ``bulk_update`` invalidates its old and new partitions. Returns the invalidations queued.
    """
    items = [instances] if isinstance(instances, models.Model) else list(instances)
    queued = 0
    by_alias: dict[str, list[Any]] = {}
    for instance in items:
        plan = plan_for(type(instance))
        if not plan.readers:
            continue
        alias = using or instance._state.db or router.db_for_write(type(instance))
        work = work_for(plan, instance, instance.__dict__.get(SNAPSHOT))
        snapshot(plan, instance)
        by_alias.setdefault(alias, []).extend(work)
        queued += len(work)
    for alias, work in by_alias.items():
        submit(alias, work)
    return queued


@contextlib.contextmanager
def track(queryset: models.QuerySet[Any]) -> Iterator[models.QuerySet[Any]]:
    """Invalidate what the rows of ``queryset`` map to, before and after the block.

    For changes that send no signal::

        with cachewire_django.track(Order.objects.filter(customer_id=3)) as orders:
            orders.update(customer_id=4)

    The rows are read (only the fields the rules read) before and after the block, by primary
    key, so rows that move between partitions, and rows the block deletes, count. Nothing is
    queued if the block raises.
    """
    model = queryset.model
    plan = plan_for(model)
    if not plan.readers:
        yield queryset
        return
    alias = queryset.db
    fields = _fields_to_load(plan)
    before = list(queryset.only(*fields)) if fields is not None else list(queryset)
    yield queryset
    pks = [obj.pk for obj in before]
    after = {obj.pk: obj for obj in model._base_manager.using(alias).filter(pk__in=pks)}
    work = []
    for obj in before:
        work.extend(work_for(plan, obj))
        current = after.get(obj.pk)
        if current is not None:
            work.extend(work_for(plan, current))
    submit(alias, work)


def _fields_to_load(plan: Any) -> list[str] | None:
    """The attnames to load, or None when a rule reads through a relation (load everything)."""
    if any(reader.remote for reader in plan.readers):
        return None
    return [plan.model._meta.pk.attname, *plan.attnames]
