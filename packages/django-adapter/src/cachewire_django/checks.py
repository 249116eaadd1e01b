"""System checks (``manage.py check``) for rules and the ``CACHEWIRE`` setting.

- ``cachewire.E001``: a dispatcher name that no installed package registers;
- ``cachewire.E002``: a ``field_mapping`` path that does not exist on the model;
- ``cachewire.E003``: a rule on a model that is not installed;
- ``cachewire.E004``: a dispatcher whose package is not installed (names what to install);
- ``cachewire.E005``: a cache alias that ``CACHES`` does not define;
- ``cachewire.E006``: a ``CACHEWIRE`` key that does not exist, or a value of the wrong type;
- ``cachewire.W001``: a rule reads through a relation, so that value's old state is not captured.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist

import cachewire.rules
from cachewire import registered_dispatcher_names
from cachewire.rules import Rule, rules_for_model
from cachewire_django import conf

__all__ = ["PROVIDERS", "check_rules", "check_settings", "register"]

#: Dispatchers that other distributions provide: what to install for each.
PROVIDERS = {
    "celery": "cachewire-celery",
    "dramatiq": "cachewire-dramatiq",
    "rq": "cachewire-rq",
    "django_rq": "cachewire-rq",
    "taskiq": "cachewire-taskiq",
    "django_q": "cachewire-django[django-q] (django-q2)",
}

_TYPES: dict[str, tuple[type, ...]] = {
    "DEFAULT_DISPATCHER": (str,),
    "DISPATCHER_RAISE_EXCEPTION": (bool,),
    "DISPATCHER_SETTINGS": (dict,),
    "DEFAULT_CACHE": (str, type(None)),
    "SKIP_RAW": (bool,),
    "MODULES": (list, tuple),
    "TASK_DEFAULTS": (dict,),
}


def _dispatcher_error(name: Any, where: str, obj: Any) -> checks.CheckMessage | None:
    if not isinstance(name, str) or name in registered_dispatcher_names():
        return None
    if name in PROVIDERS:
        return checks.Error(
            f"{where} uses the dispatcher {name!r}, whose package is not installed",
            hint=f"install {PROVIDERS[name]}",
            obj=obj,
            id="cachewire.E004",
        )
    return checks.Error(
        f"{where} uses the unknown dispatcher {name!r}",
        hint="known dispatchers: " + ", ".join(registered_dispatcher_names()),
        obj=obj,
        id="cachewire.E001",
    )


def check_settings(**_: Any) -> list[checks.CheckMessage]:
    """Check the ``CACHEWIRE`` setting."""
    raw = getattr(settings, "CACHEWIRE", {})
    if not isinstance(raw, dict):
        return [
            checks.Error(
                f"CACHEWIRE must be a dict, got {type(raw).__name__}",
                id="cachewire.E006",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for key in sorted(set(raw) - conf.KNOWN_KEYS):
        errors.append(
            checks.Error(
                f"CACHEWIRE has an unknown key {key!r}",
                hint="known keys: " + ", ".join(sorted(conf.KNOWN_KEYS)),
                id="cachewire.E006",
            )
        )
    for key, types in _TYPES.items():
        if key in raw and not isinstance(raw[key], types):
            errors.append(
                checks.Error(
                    f"CACHEWIRE[{key!r}] must be {' or '.join(t.__name__ for t in types)}, "
                    f"got {raw[key]!r}",
                    id="cachewire.E006",
                )
            )
    error = _dispatcher_error(
        raw.get("DEFAULT_DISPATCHER"), "CACHEWIRE['DEFAULT_DISPATCHER']", None
    )
    if error is not None:
        errors.append(error)
    blocks = raw.get("DISPATCHER_SETTINGS")
    if isinstance(blocks, dict):
        for name in blocks:
            error = _dispatcher_error(name, "CACHEWIRE['DISPATCHER_SETTINGS']", None)
            if error is not None:
                errors.append(error)
    cache = raw.get("DEFAULT_CACHE")
    if isinstance(cache, str) and cache not in settings.CACHES:
        errors.append(
            checks.Error(
                f"CACHEWIRE['DEFAULT_CACHE'] names the cache {cache!r}, which CACHES does not "
                "define",
                hint="defined caches: " + ", ".join(sorted(settings.CACHES)),
                id="cachewire.E005",
            )
        )
    return errors


def all_rules() -> list[Rule]:
    """Every registered rule (through the core's listing when it has one)."""
    listing = getattr(cachewire.rules, "registered_rules", None)
    if callable(listing):
        return list(listing())
    found: dict[str, Rule] = {}
    for model in apps.get_models(include_auto_created=True):
        for rule in rules_for_model(model):
            found.setdefault(rule.id, rule)
    return list(found.values())


def _path_error(model: Any, path: str) -> str | None:
    """Why ``path`` cannot be read on ``model`` (None if it can, or cannot be known)."""
    current = model
    for segment in path.split("."):
        if current is None:
            return None
        meta = current._meta
        if segment == "pk":
            current = None
            continue
        try:
            field = meta.get_field(segment)
        except FieldDoesNotExist:
            if any(f.attname == segment for f in meta.concrete_fields) or hasattr(current, segment):
                current = None  # an attname, a property or a method: its type is unknown
                continue
            return f"{current._meta.label} has no field or attribute {segment!r}"
        current = field.related_model if field.is_relation else None
    return None


def check_rules(app_configs: Sequence[Any] | None = None, **_: Any) -> list[checks.CheckMessage]:
    """Check every registered rule against the installed models."""
    from cachewire_django.wiring import local_attname

    messages: list[checks.CheckMessage] = []
    labels = {app.label for app in app_configs} if app_configs else None
    for rule in all_rules():
        where = f"rule {rule.id!r}"
        if isinstance(rule.dispatcher, str):
            error = _dispatcher_error(rule.dispatcher, where, None)
            if error is not None:
                messages.append(error)
        app_label, _dot, model_name = rule.label.partition(".")
        if labels is not None and app_label not in labels:
            continue
        try:
            model = apps.get_model(app_label, model_name) if model_name else None
        except LookupError:
            model = None
        if model is None:
            messages.append(
                checks.Error(
                    f"{where} is on {rule.label!r}, which is not an installed model",
                    hint="use 'app_label.ModelName' of an app in INSTALLED_APPS, or the class",
                    id="cachewire.E003",
                )
            )
            continue
        messages.extend(_field_messages(rule, model, where, local_attname))
    return messages


def _field_messages(
    rule: Rule, model: Any, where: str, local_attname: Any
) -> Iterable[checks.CheckMessage]:
    for param, path in rule.field_mapping.items():
        problem = _path_error(model, path)
        if problem is not None:
            yield checks.Error(
                f"{where} maps {param!r} to {path!r}: {problem}",
                obj=model,
                id="cachewire.E002",
            )
        elif "." in path and local_attname(model, path) is None:
            yield checks.Warning(
                f"{where} maps {param!r} to {path!r}, which reads through a relation: a change "
                "of the related row, or of that path's old value, is not seen",
                hint="map a local field (for example 'customer_id'), or add a rule on the "
                "related model",
                obj=model,
                id="cachewire.W001",
            )


def register() -> None:
    """Register the checks with Django (idempotent)."""
    checks.register(check_settings, "cachewire")
    checks.register(check_rules, "cachewire")
