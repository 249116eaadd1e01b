"""Model signals become rule work: which rules a model class has, and what a change maps to.

Rules apply to the model they name, its proxies, its multi-table children (and to a model that
inherits an abstract model they name). The values a rule reads from local fields are captured when
an instance is loaded, so a save that moves a row from one partition to another invalidates both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_init, post_save, pre_save

from cachewire.rules import Rule, rules_for_model
from cachewire_django import conf
from cachewire_django.transaction import submit

__all__ = ["Plan", "connect", "disconnect", "plan_for", "rewire", "snapshot", "work_for"]

logger = logging.getLogger("cachewire.django")

#: Instance attribute holding the values the rules read, as loaded or last saved.
SNAPSHOT = "_cachewire_loaded"
_CLEARED = "_cachewire_cleared"

Work = list[tuple[Rule, dict[str, Any]]]


@attrs.frozen
class _Reader:
    """How one rule's arguments are read from an instance."""

    rule: Rule
    #: parameter -> attname of a local field holding the value (read without a query)
    local: Mapping[str, str]
    #: parameter -> dotted path that goes through a relation (read on the new state only)
    remote: Mapping[str, str]


@attrs.frozen
class Plan:
    """What the rules of one model class read."""

    model: type[models.Model]
    readers: tuple[_Reader, ...]
    #: local attnames captured at load time
    attnames: tuple[str, ...]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(reader.rule for reader in self.readers)


def _labels(cls: type[models.Model]) -> list[str]:
    """The labels whose rules apply to ``cls``: itself, its proxied and parent models, and the
    abstract models it inherits."""
    labels: list[str] = []
    for klass in cls.__mro__:
        meta = getattr(klass, "_meta", None)
        if meta is None or not issubclass(klass, models.Model) or klass is models.Model:
            continue
        if meta.label not in labels:
            labels.append(meta.label)
    return labels


def local_attname(cls: type[models.Model], path: str) -> str | None:
    """The attname of the local field a path reads, if reading it needs no query: a concrete
    field (``"status"``, ``"customer_id"``, ``"pk"``) or a foreign key's target field
    (``"customer.id"``, ``"customer.pk"``)."""
    first, _, rest = path.partition(".")
    meta = cls._meta
    field: Any = meta.pk
    if first != "pk":
        try:
            field = meta.get_field(first)  # also finds a foreign key by its attname
        except FieldDoesNotExist:
            return None
    if not getattr(field, "concrete", False) or field.many_to_many:
        return None
    if not rest:
        # A foreign key named by its name reads the related object, which cannot travel.
        reads_object = field.is_relation and first != field.attname
        return None if reads_object else str(field.attname)
    if first == field.attname or not (field.many_to_one or field.one_to_one):
        return None
    target = field.target_field
    if rest in (target.name, target.attname) or (rest == "pk" and target.primary_key):
        return str(field.attname)
    return None


def _current_rules(cls: type[models.Model]) -> tuple[Rule, ...]:
    labels = _labels_of.get(cls)
    if labels is None:
        labels = _labels_of[cls] = tuple(_labels(cls))
    found: list[Rule] = []
    for label in labels:
        for rule in rules_for_model(label):
            if rule not in found:
                found.append(rule)
    return tuple(found)


def _build_plan(cls: type[models.Model], rules: tuple[Rule, ...]) -> Plan:
    readers: list[_Reader] = []
    attnames: list[str] = []
    for rule in rules:
        local: dict[str, str] = {}
        remote: dict[str, str] = {}
        for param, path in rule.field_mapping.items():
            attname = local_attname(cls, path)
            if attname is None:
                remote[param] = path
            else:
                local[param] = attname
                if attname not in attnames:
                    attnames.append(attname)
        readers.append(_Reader(rule, local, remote))
    return Plan(cls, tuple(readers), tuple(attnames))


_labels_of: dict[type[models.Model], tuple[str, ...]] = {}
_plans: dict[type[models.Model], Plan] = {}
_plans_lock = threading.Lock()
_UID = "cachewire_django"


def plan_for(cls: type[models.Model]) -> Plan:
    """The plan of a model class, rebuilt when its rules change (a module that defines rules
    may be imported after Django started, as URLconfs and views are)."""
    rules = _current_rules(cls)
    plan = _plans.get(cls)
    if plan is None or plan.rules != rules:
        with _plans_lock:
            plan = _plans[cls] = _build_plan(cls, rules)
        if plan.attnames:  # idempotent: one receiver per class and dispatch_uid
            post_init.connect(
                _on_post_init, sender=cls, dispatch_uid=f"{_UID}.post_init", weak=False
            )
    return plan


def _read_path(obj: Any, path: str) -> Any:
    current = obj
    for part in path.split("."):
        if current is None:
            return None
        current = getattr(current, part)
    return current


def work_for(plan: Plan, instance: Any, old: Mapping[str, Any] | None = None) -> Work:
    """The (rule, arguments) pairs a change of ``instance`` maps to: its current values and, when
    ``old`` (attname -> value as loaded) differs, the old ones too."""
    work: Work = []
    values = instance.__dict__
    for reader in plan.readers:
        new: dict[str, Any] = {}
        for param, attname in reader.local.items():
            new[param] = values[attname] if attname in values else getattr(instance, attname)
        for param, path in reader.remote.items():
            new[param] = _read_path(instance, path)
        work.append((reader.rule, new))
        if old and reader.local:
            before = {
                param: old.get(attname, new[param]) if attname in old else new[param]
                for param, attname in reader.local.items()
            }
            if any(before[p] != new[p] for p in reader.local):
                before.update((p, new[p]) for p in reader.remote)
                work.append((reader.rule, before))
    return work


def snapshot(plan: Plan, instance: Any) -> None:
    """Remember the values the rules read, as they are now."""
    values = instance.__dict__
    values[SNAPSHOT] = {a: values[a] for a in plan.attnames if a in values}


# ---------------------------------------------------------------- receivers


def _on_post_init(sender: type[models.Model], instance: Any, **_: Any) -> None:
    values = instance.__dict__
    plan = _plans.get(sender) or plan_for(sender)  # the plan as of the last save or rewire
    values[SNAPSHOT] = {a: values[a] for a in plan.attnames if a in values}


def _on_pre_save(
    sender: type[models.Model], instance: Any, raw: bool, using: str, **_: Any
) -> None:
    plan = plan_for(sender)
    if not plan.attnames or instance._state.adding or (raw and conf.current().skip_raw):
        return
    known = instance.__dict__.get(SNAPSHOT)
    missing = [a for a in plan.attnames if known is None or a not in known]
    if missing and instance.pk is not None:
        # Deferred at load (or loaded before the rules existed): read the row as it is now.
        row = sender._base_manager.using(using).filter(pk=instance.pk).values(*missing).first()
        if row is not None:
            instance.__dict__[SNAPSHOT] = {**(known or {}), **row}


def _on_post_save(
    sender: type[models.Model],
    instance: Any,
    created: bool,
    raw: bool,
    using: str,
    **_: Any,
) -> None:
    plan = plan_for(sender)
    if not plan.readers or (raw and conf.current().skip_raw):
        return
    old = None if created else instance.__dict__.get(SNAPSHOT)
    work = work_for(plan, instance, old)
    snapshot(plan, instance)
    submit(using, work)


def _on_post_delete(sender: type[models.Model], instance: Any, using: str, **_: Any) -> None:
    plan = plan_for(sender)
    if not plan.readers:
        return
    submit(using, work_for(plan, instance, instance.__dict__.get(SNAPSHOT)))


def _m2m_field(instance: Any, model: Any, through: Any, reverse: bool) -> Any:
    owner = model if reverse else type(instance)
    for field in owner._meta.many_to_many:
        if field.remote_field.through is through:
            return field
    return None


def _on_m2m_changed(
    sender: Any,
    instance: Any,
    action: str,
    reverse: bool,
    model: Any,
    pk_set: set[Any] | None,
    using: str,
    **_: Any,
) -> None:
    through_plan = plan_for(sender)
    other_plan = plan_for(model)
    if action == "pre_clear":
        if through_plan.readers or other_plan.readers:
            field = _m2m_field(instance, model, sender, reverse)
            mine, theirs = _through_names(field, reverse)
            current = sender._base_manager.using(using).filter(**{mine: instance.pk})
            cleared = instance.__dict__.setdefault(_CLEARED, {})
            cleared[sender] = set(current.values_list(theirs, flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        pk_set = instance.__dict__.get(_CLEARED, {}).pop(sender, set())
    work: Work = []
    own_plan = plan_for(type(instance))
    if own_plan.readers:
        work.extend(work_for(own_plan, instance))
    if pk_set and through_plan.readers:
        field = _m2m_field(instance, model, sender, reverse)
        mine, theirs = _through_names(field, reverse)
        for pk in sorted(pk_set, key=repr):
            row = sender(**{mine: instance.pk, theirs: pk})
            work.extend(work_for(through_plan, row))
    if pk_set and other_plan.readers:
        for other in model._base_manager.using(using).filter(pk__in=pk_set):
            work.extend(work_for(other_plan, other))
    if work:
        submit(using, work)


def _through_names(field: Any, reverse: bool) -> tuple[str, str]:
    """(attname of the through FK to the instance's side, attname of the other side's FK)."""
    through = field.remote_field.through
    source = through._meta.get_field(field.m2m_field_name()).attname
    target = through._meta.get_field(field.m2m_reverse_field_name()).attname
    return (target, source) if reverse else (source, target)


def connect(model_classes: Iterable[type[models.Model]]) -> None:
    """Connect the receivers: save, delete and m2m for every model, and load-time capture for
    the classes whose rules read local fields."""
    pre_save.connect(_on_pre_save, dispatch_uid=f"{_UID}.pre_save", weak=False)
    post_save.connect(_on_post_save, dispatch_uid=f"{_UID}.post_save", weak=False)
    post_delete.connect(_on_post_delete, dispatch_uid=f"{_UID}.post_delete", weak=False)
    m2m_changed.connect(_on_m2m_changed, dispatch_uid=f"{_UID}.m2m_changed", weak=False)
    for cls in model_classes:
        if plan_for(cls).attnames:
            post_init.connect(
                _on_post_init, sender=cls, dispatch_uid=f"{_UID}.post_init", weak=False
            )


def disconnect(model_classes: Iterable[type[models.Model]]) -> None:
    """Undo `connect` (for tests and benchmarks)."""
    pre_save.disconnect(dispatch_uid=f"{_UID}.pre_save")
    post_save.disconnect(dispatch_uid=f"{_UID}.post_save")
    post_delete.disconnect(dispatch_uid=f"{_UID}.post_delete")
    m2m_changed.disconnect(dispatch_uid=f"{_UID}.m2m_changed")
    for cls in model_classes:
        post_init.disconnect(sender=cls, dispatch_uid=f"{_UID}.post_init")


def rewire() -> None:
    """Rebuild every model's plan and reconnect; call it after defining rules late (after
    Django started), for example inside a test."""
    from django.apps import apps

    classes = apps.get_models(include_auto_created=True)
    with _plans_lock:
        _plans.clear()
        _labels_of.clear()
    disconnect(classes)
    connect(classes)
