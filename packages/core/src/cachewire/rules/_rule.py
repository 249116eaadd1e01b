"""`Rule`: when a kind of data changes, which cached entries are stale."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from cachewire.dispatch import dispatcher_class
from cachewire.errors import ConfigurationError, DuplicateRuleError

__all__ = ["InvalidationRule", "Rule", "get_rule", "model_label", "rules_for_model"]


class CachedTarget(Protocol):
    """What a rule needs of a cached function."""

    @property
    def cache_id(self) -> str: ...

    def check_invalidation_params(self, names: Any) -> None: ...

    def invalidate(self, **kwargs: Any) -> Any: ...

    async def ainvalidate(self, **kwargs: Any) -> Any: ...


def model_label(model: Any) -> str:
    """The label of a kind of data: a string as given, a Django-style ``_meta.label``, or
    ``module.qualname`` of a class."""
    if isinstance(model, str):
        if not model:
            raise ConfigurationError("Rule(model='') needs a non-empty label or a class")
        return model
    meta = getattr(model, "_meta", None)
    label = getattr(meta, "label", None)
    if isinstance(label, str):
        return label
    if isinstance(model, type):
        return f"{model.__module__}.{model.__qualname__}"
    raise ConfigurationError(f"Rule(model={model!r}) must be a class or a label string")


def _read_path(obj: Any, path: str) -> Any:
    current = obj
    for part in path.split("."):
        if current is None:
            return None
        current = current.get(part) if isinstance(current, Mapping) else getattr(current, part)
    return current


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _check_dispatcher(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        dispatcher_class(value)  # the one resolver: an unknown name lists the known ones


def _check_dispatcher_config(rule: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if rule.dispatcher is not None and value:
        dispatcher_class(rule.dispatcher).check_config(value, where="Rule(dispatcher_config)")


@attrs.define(eq=False)
class Rule:
    """Invalidate the entries of a cached function when objects of ``model`` change.

    ``field_mapping`` maps the function's parameters to dotted attribute paths on the changed
    object. Attach it with ``@cached(..., invalidates_on=[Rule(...)])`` or pass ``function=``.
    """

    model: Any
    field_mapping: Mapping[str, str] = attrs.field(factory=dict, converter=_as_dict)
    dispatcher: Any = attrs.field(default=None, validator=_check_dispatcher)
    dispatcher_config: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_as_dict, validator=_check_dispatcher_config
    )
    raise_exception: bool | None = None
    name: str | None = None
    function: Any = None
    label: str = attrs.field(init=False)
    target: CachedTarget | None = attrs.field(init=False, default=None)
    _id: str | None = attrs.field(init=False, default=None, repr=False)
    _dispatcher: tuple[Any, Any] | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.label = model_label(self.model)
        for param, path in self.field_mapping.items():
            if not isinstance(param, str) or not isinstance(path, str) or not path:
                raise ConfigurationError(
                    f"Rule field_mapping entries must be 'parameter': 'attribute.path' strings, "
                    f"got {param!r}: {path!r}"
                )
        if self.function is not None:
            if isinstance(self.function, str):
                _register(self, self.function)
            else:
                self.attach(self.function)

    @property
    def id(self) -> str:
        """Stable across processes: ``name`` or derived from function, model and mapping."""
        if self._id is None:
            self._id = self._derive_id()
        return self._id

    def _derive_id(self) -> str:
        if self.name:
            return self.name
        target_id = self.target.cache_id if self.target is not None else str(self.function)
        mapping = json.dumps(sorted(self.field_mapping.items()))
        digest = hashlib.sha256(mapping.encode()).hexdigest()[:12]
        return f"{target_id}@{self.label}#{digest}"

    def attach(self, function: CachedTarget) -> None:
        """Bind the rule to its cached function and register it; checks the mapping."""
        if self.target is not None and self.target is not function:
            raise ConfigurationError(f"rule {self.id!r} is already attached to another function")
        function.check_invalidation_params(tuple(self.field_mapping))
        self.target = function
        self._id = None  # derived from the target from now on
        _register(self, function.cache_id)

    def resolve_target(self) -> CachedTarget:
        """The cached function, looked up by id when the rule named it by string."""
        if self.target is not None:
            return self.target
        from cachewire.cache import get_cached_function

        found: CachedTarget = get_cached_function(str(self.function))
        self.target = found
        self._id = None
        return found

    def kwargs_for(self, obj: Any) -> dict[str, Any]:
        """The function arguments that ``obj`` maps to."""
        return {param: _read_path(obj, path) for param, path in self.field_mapping.items()}


InvalidationRule = Rule

_lock = threading.Lock()
_by_id: dict[str, Rule] = {}
_by_model: dict[str, list[Rule]] = {}


def _same_rule(a: Rule, b: Rule) -> bool:
    return (a.label, dict(a.field_mapping), a.dispatcher, a.raise_exception) == (
        b.label,
        dict(b.field_mapping),
        b.dispatcher,
        b.raise_exception,
    )


def _register(rule: Rule, _target_id: str) -> None:
    rule_id = rule.id
    with _lock:
        existing = _by_id.get(rule_id)
        if existing is not None and existing is not rule:
            if not _same_rule(existing, rule):
                raise DuplicateRuleError(
                    f"two different rules have the id {rule_id!r}; give one of them another name="
                )
            # The same declaration evaluated again (a module reload): the new one replaces it.
            _by_model[existing.label].remove(existing)
        _by_id[rule_id] = rule
        _by_model.setdefault(rule.label, []).append(rule)


def get_rule(rule_id: str) -> Rule | None:
    """The rule registered under ``rule_id`` in this process, or None."""
    return _by_id.get(rule_id)


def rules_for_model(model: Any) -> list[Rule]:
    """The rules registered for a model (class or label)."""
    return list(_by_model.get(model_label(model), ()))


def unregister_all() -> None:
    """Forget every rule (for tests)."""
    with _lock:
        _by_id.clear()
        _by_model.clear()
