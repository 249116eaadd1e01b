"""`Rule`: when a kind of data changes, which cached entries are stale."""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs

from cachewire.dispatch import dispatcher_class
from cachewire.errors import ConfigurationError, DuplicateRuleError, RulePathError
from cachewire.rules._paths import OldValues, _PathMissing, _read, _split, model_label

__all__ = [
    "EVENTS",
    "InvalidationRule",
    "OldValues",
    "Rule",
    "get_rule",
    "model_label",
    "registered_rules",
    "rules_for_model",
]

logger = logging.getLogger("cachewire.rules")

#: The events a rule can fire on. ``changed(event="save")`` means "create or update".
EVENTS = ("create", "update", "delete")


class CachedTarget(Protocol):
    """What a rule needs of a cached function."""

    @property
    def cache_id(self) -> str: ...

    def check_invalidation_params(self, names: Any) -> None: ...

    def invalidate(self, **kwargs: Any) -> Any: ...

    async def ainvalidate(self, **kwargs: Any) -> Any: ...


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _as_tuple(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


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
    ``events``, ``watch_fields`` and ``condition`` narrow when it fires; ``rewarm`` recomputes a
    whole entry after invalidating it.
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
    events: tuple[str, ...] = attrs.field(default=EVENTS, converter=_as_tuple, kw_only=True)
    watch_fields: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple, kw_only=True)
    condition: Callable[[Any], bool] | None = attrs.field(default=None, kw_only=True)
    rewarm: bool = attrs.field(default=False, kw_only=True)
    label: str = attrs.field(init=False)
    target: CachedTarget | None = attrs.field(init=False, default=None)
    _id: str | None = attrs.field(init=False, default=None, repr=False)
    _paths: tuple[tuple[str, str, tuple[str, ...]], ...] = attrs.field(
        init=False, default=(), repr=False
    )
    _watch: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        init=False, default=(), repr=False
    )
    # (parameter, attribute) when every path is one attribute: read without walking.
    _attributes: tuple[tuple[str, str], ...] | None = attrs.field(
        init=False, default=None, repr=False
    )
    # Where this rule's work goes under one settings snapshot (see `cachewire.rules._changes`).
    _route: Any = attrs.field(init=False, default=None, repr=False)
    _gated: bool = attrs.field(init=False, default=False, repr=False)
    _rewarm_plan: tuple[Any, Any] | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.label = model_label(self.model)
        where = f"Rule(model={self.label!r})"
        for param, path in self.field_mapping.items():
            if not isinstance(param, str) or not isinstance(path, str) or not path:
                raise ConfigurationError(
                    f"{where}: field_mapping entries must be 'parameter': 'attribute.path' "
                    f"strings, got {param!r}: {path!r}"
                )
        self._paths = tuple(
            (param, path, _split(path)) for param, path in self.field_mapping.items()
        )
        if all(len(parts) == 1 for _, _, parts in self._paths):
            self._attributes = tuple((param, parts[0]) for param, _, parts in self._paths)
        unknown = [event for event in self.events if event not in EVENTS]
        if unknown or not self.events:
            raise ConfigurationError(
                f"{where}: events={self.events!r} must name at least one of {EVENTS}"
            )
        for path in self.watch_fields:
            if not isinstance(path, str) or not path:
                raise ConfigurationError(
                    f"{where}: watch_fields entries must be attribute paths, got {path!r}"
                )
        self._watch = tuple((path, _split(path)) for path in self.watch_fields)
        if self.condition is not None and not callable(self.condition):
            raise ConfigurationError(
                f"{where}: condition={self.condition!r} must be a callable taking the object"
            )
        if not isinstance(self.rewarm, bool):
            raise ConfigurationError(f"{where}: rewarm={self.rewarm!r} must be True or False")
        self._gated = bool(
            self.watch_fields or self.condition is not None or set(self.events) != set(EVENTS)
        )
        if self.function is not None:
            if isinstance(self.function, str):
                _register(self, self.function)
            else:
                self.attach(self.function)

    @property
    def id(self) -> str:
        """Stable across processes: ``name`` or derived from function, model and options."""
        if self._id is None:
            self._id = self._derive_id()
        return self._id

    def _identity(self) -> list[Any]:
        """What tells two declarations apart; options at their defaults are left out, so an id
        stays the same when an option is added to the library."""
        identity: list[Any] = sorted(self.field_mapping.items())
        options: dict[str, Any] = {}
        if set(self.events) != set(EVENTS):
            options["events"] = sorted(self.events)
        if self.watch_fields:
            options["watch_fields"] = sorted(self.watch_fields)
        if self.condition is not None:
            options["condition"] = _callable_name(self.condition)
        if self.rewarm:
            options["rewarm"] = True
        if options:
            identity.append(options)
        return identity

    def _derive_id(self) -> str:
        if self.name:
            return self.name
        target_id = self.target.cache_id if self.target is not None else str(self.function)
        mapping = json.dumps(self._identity())
        digest = hashlib.sha256(mapping.encode()).hexdigest()[:12]
        return f"{target_id}@{self.label}#{digest}"

    def attach(self, function: CachedTarget) -> None:
        """Bind the rule to its cached function and register it; checks the mapping."""
        if self.target is not None and self.target is not function:
            raise ConfigurationError(f"rule {self.id!r} is already attached to another function")
        function.check_invalidation_params(tuple(self.field_mapping))
        self.target = function
        self._id = None  # derived from the target from now on
        self._rewarm_plan = None
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

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path the rule reads from a change (``field_mapping`` then ``watch_fields``):
        what a framework adapter snapshots as old values. A ``condition`` may read more."""
        seen = dict.fromkeys((*self.field_mapping.values(), *self.watch_fields))
        return tuple(seen)

    # -------------------------------------------------------------- reading a change

    def _path_error(
        self, missing: _PathMissing, path: str, parts: tuple[str, ...], obj: Any
    ) -> RulePathError:
        attribute = parts[missing.depth]
        holder = missing.holder
        kind = "key" if isinstance(holder, Mapping) else "attribute"
        if missing.in_old:
            whose = "the old values"
        else:
            new = obj.new if type(obj) is OldValues else obj
            whose = f"a {type(new).__name__}"
        at = "" if missing.depth == 0 else f" (at {'.'.join(parts[: missing.depth])})"
        return RulePathError(
            f"rule {self.id!r} of model {self.label!r} reads {path!r}, but {whose} has no "
            f"{kind} {attribute!r}{at}; fix the rule's path or pass the object it expects"
        )

    def read(self, obj: Any, path: str) -> Any:
        """The value at a dotted path of ``obj``: an object or a mapping, read the same way.

        Raises `RulePathError` (naming this rule, its model and the path) when an attribute or
        key is missing; a None on the way reads as None.
        """
        parts = _split(path)
        try:
            return _read(obj, parts)
        except _PathMissing as missing:
            raise self._path_error(missing, path, parts, obj) from None

    def kwargs_for(self, obj: Any) -> dict[str, Any]:
        """The function arguments that ``obj`` (an object, a mapping or `OldValues`) maps to."""
        attributes = self._attributes
        if attributes is not None and type(obj) is not OldValues and not isinstance(obj, Mapping):
            try:
                return {param: getattr(obj, name) for param, name in attributes}
            except AttributeError:
                pass  # read again below, which names what is missing
        kwargs: dict[str, Any] = {}
        try:
            for param, _path, parts in self._paths:
                kwargs[param] = _read(obj, parts)
        except _PathMissing as missing:
            raise self._path_error(missing, _path, parts, obj) from None
        return kwargs

    def fires_on(self, event: str, *, has_old: bool) -> bool:
        """Whether ``event`` is one of this rule's; "save" is an update when old values exist."""
        events = self.events
        if event == "save":
            return "update" in events if has_old else ("create" in events or "update" in events)
        return event in events

    def _watched_changed(self, new: Any, old: Any, update_fields: Any) -> bool:
        watch = self._watch
        if update_fields is not None:
            saved = set(update_fields)
            watch = tuple((p, parts) for p, parts in watch if p in saved or parts[0] in saved)
            if not watch:
                return False
        if old is None:
            return True  # nothing to compare with: assume it changed
        for path, parts in watch:
            if type(old) is OldValues and not old.knows(parts):
                return True
            try:
                if _read(old, parts) != _read(new, parts):
                    return True
            except _PathMissing as missing:
                raise self._path_error(missing, path, parts, new) from None
        return False

    def _holds(self, obj: Any) -> bool:
        condition = self.condition
        if condition is None:
            return True
        try:
            return bool(condition(obj))
        except Exception as exc:
            exc.add_note(f"in the condition of rule {self.id!r} (model {self.label!r})")
            raise

    def invalidations(
        self,
        obj: Any,
        *,
        old: Any = None,
        event: str = "save",
        update_fields: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The argument sets to invalidate for one change (none when the rule does not fire).

        ``old`` is the old object or an `OldValues`. The new and the old state are each
        evaluated (the condition, then the mapping), so moving a row between partitions, or out
        of what the condition selects, invalidates where it was too.
        """
        if not self._gated:
            kwargs = self.kwargs_for(obj)
            return [kwargs] if old is None else [kwargs, self.kwargs_for(old)]
        if not self.fires_on(event, has_old=old is not None):
            return []
        if (
            self._watch
            and event in ("update", "save")
            and not self._watched_changed(obj, old, update_fields)
        ):
            return []
        found = [self.kwargs_for(obj)] if self._holds(obj) else []
        if old is not None and self._holds(old):
            found.append(self.kwargs_for(old))
        return found

    # -------------------------------------------------------------- applying work

    def _rewarm_call(self, target: Any, kwargs: Mapping[str, Any]) -> bool:
        """Whether ``target(**kwargs)`` recomputes one whole entry (a full argument set)."""
        plan = self._rewarm_plan
        if plan is None or plan[0] is not target:
            try:
                signature: inspect.Signature | None = inspect.signature(target)
            except (TypeError, ValueError):
                signature = None
            if getattr(target, "receiver", None):
                signature = None  # a method: there is no instance to call it on
            plan = (target, signature)
            self._rewarm_plan = plan
        signature = plan[1]
        if signature is None:
            return False
        try:
            signature.bind(**kwargs)
        except TypeError:
            return False
        return True

    def apply(self, kwargs: Mapping[str, Any]) -> None:
        """Invalidate what one argument set names; with ``rewarm``, recompute that entry."""
        target = self.resolve_target()
        target.invalidate(**kwargs)
        if self.rewarm and self._rewarm_call(target, kwargs):
            result = target(**kwargs)  # type: ignore[operator]
            if inspect.isawaitable(result):
                _rewarm_on_loop(self, result)

    async def aapply(self, kwargs: Mapping[str, Any]) -> None:
        """Async twin of `apply`."""
        target = self.resolve_target()
        await target.ainvalidate(**kwargs)
        if self.rewarm and self._rewarm_call(target, kwargs):
            if inspect.iscoroutinefunction(getattr(target, "__wrapped__", None)):
                await target(**kwargs)  # type: ignore[operator]
                return
            import anyio.to_thread

            await anyio.to_thread.run_sync(lambda: target(**kwargs))  # type: ignore[operator]


InvalidationRule = Rule

_pending_rewarms: set[asyncio.Task[Any]] = set()


def _rewarm_on_loop(rule: Rule, awaitable: Any) -> None:
    """Re-warm an async function from sync code: on this thread's loop, if one runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        awaitable.close()
        logger.debug(
            "rule %r: no event loop in this thread to re-warm an async function; invalidated only",
            rule.id,
        )
        return

    async def run() -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("rule %r: re-warming failed (the entry stays invalidated)", rule.id)

    task = loop.create_task(run())
    _pending_rewarms.add(task)
    task.add_done_callback(_pending_rewarms.discard)


def _callable_name(function: Any) -> str:
    module = getattr(function, "__module__", "") or ""
    return f"{module}.{getattr(function, '__qualname__', repr(function))}"


# ------------------------------------------------------------------ registry

_lock = threading.Lock()
_by_id: dict[str, Rule] = {}
# Tuples replaced under the lock, never changed: readers need no lock and no copy.
_by_model: dict[str, tuple[Rule, ...]] = {}
_unknown_models: set[str] = set()


def _same_rule(a: Rule, b: Rule) -> bool:
    return (a.label, a._identity(), a.dispatcher, a.raise_exception) == (
        b.label,
        b._identity(),
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
            _by_model[existing.label] = tuple(
                known for known in _by_model[existing.label] if known is not existing
            )
        _by_id[rule_id] = rule
        _by_model[rule.label] = (*_by_model.get(rule.label, ()), rule)


def get_rule(rule_id: str) -> Rule | None:
    """The rule registered under ``rule_id`` in this process, or None."""
    return _by_id.get(rule_id)


def registered_rules() -> list[Rule]:
    """Every rule registered in this process (for checks and tooling), in registration order."""
    with _lock:
        return list(_by_id.values())


def rules_for_model(model: Any) -> list[Rule]:
    """The rules registered for a model (class or label)."""
    return list(rules_of(model))


def rules_of(model: Any) -> tuple[Rule, ...]:
    """`rules_for_model` without the copy (the hot path of `changed`)."""
    label = model if type(model) is str and model else model_label(model)
    return _by_model.get(label, ())


def report_unknown_model(label: str) -> bool:
    """Log (at WARNING, once per label) a change of a model no rule knows; True the first time."""
    with _lock:
        if label in _unknown_models or label in _by_model:
            return False
        _unknown_models.add(label)
        known = sorted(_by_model)
    close = difflib.get_close_matches(label, known, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    logger.warning(
        "changed() was called for model %r, which no rule knows (reported once)%s", label, hint
    )
    return True


def unregister_all() -> None:
    """Forget every rule (for tests)."""
    with _lock:
        _by_id.clear()
        _by_model.clear()
        _unknown_models.clear()
