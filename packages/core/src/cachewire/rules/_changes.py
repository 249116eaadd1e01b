"""`changed()` turns one data change into rule work; `collect()` batches and de-duplicates it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from cachewire._settings import Settings, get_settings
from cachewire.dispatch import (
    DispatchContext,
    Dispatcher,
    dispatch_stats,
    resolve_dispatcher,
    resolve_raise_exception,
)
from cachewire.errors import CachewireError, ConfigurationError, DispatchError
from cachewire.rules._apply import run_rules
from cachewire.rules._rule import (
    OldValues,
    Rule,
    model_label,
    report_unknown_model,
    rules_of,
)
from cachewire.wire import WireArguments, encode_arguments

__all__ = ["ChangeBatch", "changed", "collect", "current_batch", "work_identity"]

logger = logging.getLogger("cachewire.rules")

#: What `changed(event=...)` accepts: "save" means create-or-update (the caller does not know).
CHANGE_EVENTS = ("create", "update", "delete", "save")
_EVENTS = frozenset(CHANGE_EVENTS)


def _old_state(old: Any, new: Any) -> Any:
    """The old state a rule reads: the old object itself, or the given old values over ``new``."""
    if old is None or type(old) is OldValues:
        return old
    if isinstance(old, Mapping):
        return OldValues(old, new)
    return old


def work_identity(rule: Rule, kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """What makes two invalidations the same work: the rule and its arguments, where equal
    values of different types (``1``, ``1.0``, ``True``) stay apart. Raises if an argument cannot
    travel."""
    rule_id = rule.id
    return rule_id, encode_arguments(kwargs, rule_id=rule_id)


#: Rule work to send: (rule id, argument text) -> the rule and its arguments.
Work = dict[tuple[str, str], tuple[Rule, dict[str, Any]]]


@attrs.define
class ChangeBatch:
    """Rule work gathered until `flush`, sent once per distinct rule and arguments.

    Framework adapters open one per transaction (``ChangeBatch(using="default")``), feed it with
    `record`, and `flush` it when the transaction commits or `discard` it when it rolls back.
    ``origin``, ``using`` and ``loop`` reach each dispatcher in its `DispatchContext`.
    """

    origin: str | None = None
    using: str | None = None
    loop: asyncio.AbstractEventLoop | None = attrs.field(factory=lambda: _running_loop())
    _work: Work = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._work)

    def add(self, rule: Rule, kwargs: dict[str, Any]) -> None:
        """Queue one invalidation; identical ones collapse. Raises if an argument cannot travel."""
        _add(self._work, rule, kwargs)

    def record(
        self,
        model: Any,
        obj: Any,
        *,
        old: Any = None,
        event: str = "save",
        update_fields: Iterable[str] | None = None,
    ) -> int:
        """Queue the rule work of one change of ``obj`` (of ``model``); returns how many
        invalidations were new to this batch. See `changed` for the other arguments."""
        before = len(self._work)
        _gather(self._work, model, obj, old, event, update_fields)
        return len(self._work) - before

    def discard(self) -> None:
        """Drop the gathered work (the change was rolled back)."""
        self._work.clear()

    def flush(self) -> None:
        """Send the gathered work: one `dispatch` per dispatcher group, or per rule if that
        dispatcher does not batch. A failing dispatch is logged and counted, falls back as its
        dispatcher is configured, and raises only when the rules' error policy says so."""
        work, self._work = self._work, {}
        _send_work(work, self.origin, self.using, self.loop)


def _add(work: Work, rule: Rule, kwargs: Mapping[str, Any]) -> None:
    """Queue one invalidation in ``work``; the arguments are encoded for the wire once, here,
    and their text is both the identity and what travels."""
    rule_id = rule.id
    arguments = WireArguments.encode(kwargs, rule_id=rule_id)
    identity = (rule_id, arguments.wire)
    if identity not in work:
        work[identity] = (rule, arguments)


def _gather(
    work: Work,
    model: Any,
    obj: Any,
    old: Any,
    event: str,
    update_fields: Iterable[str] | None,
) -> None:
    """Queue the rule work of one change in ``work`` (see `changed`)."""
    if event not in _EVENTS:
        raise ConfigurationError(f"changed(event={event!r}) must be one of {CHANGE_EVENTS}")
    rules = rules_of(model)
    if not rules:
        dispatch_stats.bump("unknown_models")
        report_unknown_model(model_label(model))
        return
    old_state = old if old is None else _old_state(old, obj)
    for rule in rules:
        for kwargs in rule.invalidations(
            obj, old=old_state, event=event, update_fields=update_fields
        ):
            _add(work, rule, kwargs)


@attrs.frozen
class _Route:
    """Where a rule's work goes under one settings snapshot, and its resolved error policy."""

    settings: Settings
    raise_setting: bool | None
    dispatcher: Dispatcher
    raise_exception: bool
    #: Rules whose routes share this key travel in one `dispatch` call.
    group: tuple[Any, ...]


def _route_for(rule: Rule) -> _Route:
    """The rule's dispatcher and error policy, kept on the rule until the settings (or the
    rule's own ``raise_exception``) change."""
    settings = get_settings()
    route: _Route | None = rule._route
    if (
        route is not None
        and route.settings is settings
        and route.raise_setting is rule.raise_exception
    ):
        return route
    spec = rule.dispatcher if rule.dispatcher is not None else settings.default_dispatcher
    dispatcher = resolve_dispatcher(spec, rule.dispatcher_config)
    group = dispatcher.batch_key()
    if not dispatcher.supports_batching:
        group = (*group, rule.id)
    route = _Route(
        settings=settings,
        raise_setting=rule.raise_exception,
        dispatcher=dispatcher,
        raise_exception=resolve_raise_exception([rule], dispatcher.name, dispatcher.config),
        group=group,
    )
    rule._route = route
    return route


def _send_work(
    work: Work,
    origin: str | None,
    using: str | None,
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    """Send gathered work: one `dispatch` per dispatcher group, or per rule if that dispatcher
    does not batch. A failing group does not stop the others; the first error is raised after."""
    if len(work) == 1:  # one change of one rule, the commonest: nothing to group
        ((rule, kwargs),) = work.values()
        route = _route_for(rule)
        _send(
            route.dispatcher,
            [rule.id],
            {rule.id: [kwargs]},
            route.raise_exception,
            origin,
            using,
            loop,
        )
        return
    # group -> its dispatcher, its rules' error policies by rule id, their argument sets
    groups: dict[tuple[Any, ...], tuple[Dispatcher, dict[str, bool], dict[str, list[Any]]]] = {}
    for rule, kwargs in work.values():
        route = _route_for(rule)
        _, policies, rule_kwargs = groups.setdefault(route.group, (route.dispatcher, {}, {}))
        rule_id = rule.id
        policies[rule_id] = route.raise_exception
        rule_kwargs.setdefault(rule_id, []).append(kwargs)
    errors: list[BaseException] = []
    for dispatcher, policies, rule_kwargs in groups.values():
        # In a batch, True wins (`resolve_raise_exception`).
        raise_exception = any(policies.values())
        try:
            _send(dispatcher, list(policies), rule_kwargs, raise_exception, origin, using, loop)
        except BaseException as exc:  # keep sending the other groups, then raise
            errors.append(exc)
    if errors:
        raise errors[0]


# The context of a change outside any transaction and event loop, built once (it is frozen).
_BARE_CONTEXTS = {flag: DispatchContext(raise_exception=flag) for flag in (False, True)}


def _send(
    dispatcher: Dispatcher,
    rule_ids: list[str],
    rule_kwargs: dict[str, list[Any]],
    raise_exception: bool,
    origin: str | None,
    using: str | None,
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    if origin is None and using is None and loop is None:
        context = _BARE_CONTEXTS[raise_exception]
    else:
        context = DispatchContext(
            origin=origin, using=using, loop=loop, raise_exception=raise_exception
        )
    try:
        # Every argument was checked for the wire when it was added, so nothing fails in a
        # worker for that reason.
        dispatcher.dispatch(rule_ids=rule_ids, rule_kwargs=rule_kwargs, context=context)
        dispatch_stats.bump("dispatched", len(rule_ids))
    except Exception as exc:
        dispatch_stats.bump("dispatch_errors")
        logger.error(
            "dispatching rules %s through %r failed: %s",
            rule_ids,
            dispatcher.name,
            exc,
            exc_info=exc,
        )
        if dispatcher.option("fallback") == "inline":
            dispatch_stats.bump("fallbacks")
            logger.warning("running rules %s inline instead", rule_ids)
            run_rules(rule_ids, rule_kwargs, dispatcher_name=dispatcher.name)
            return
        if raise_exception:
            if isinstance(exc, CachewireError):
                raise
            raise DispatchError(
                f"dispatching rules {rule_ids} through {dispatcher.name!r} failed: {exc}"
            ) from exc


_current: contextvars.ContextVar[ChangeBatch | None] = contextvars.ContextVar(
    "cachewire_change_batch", default=None
)


def current_batch() -> ChangeBatch | None:
    """The batch of the innermost `collect()` block, if any."""
    return _current.get()


@contextlib.contextmanager
def collect(*, origin: str | None = None, using: str | None = None) -> Iterator[ChangeBatch]:
    """Gather the rule work of every `changed()` inside the block and send it once at the end.

    Nested blocks join the outermost one. If the block raises, the gathered work is discarded.
    """
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    batch = ChangeBatch(origin=origin, using=using)
    token = _current.set(batch)
    try:
        yield batch
    except BaseException:
        batch.discard()
        raise
    finally:
        _current.reset(token)
    batch.flush()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    # Not `get_running_loop`, which raises (a slow path) when there is none.
    return asyncio._get_running_loop()


def changed(
    model: Any,
    obj: Any,
    *,
    old: Any = None,
    event: str = "save",
    update_fields: Iterable[str] | None = None,
) -> int:
    """Record that ``obj`` (of ``model``) was created, updated or deleted; returns the
    invalidations queued.

    ``event`` is "create", "update", "delete", or "save" (create or update: the caller cannot
    tell). Rules are evaluated against the new object and, when ``old`` is given (the old object,
    or a mapping of old values by path or attribute name), against the old state too, so moving
    a row between partitions invalidates both. ``update_fields`` (the fields a save wrote) narrows
    ``watch_fields``. Inside `collect()` the work joins its batch; outside it is sent at once.
    Raises `RulePathError` when a rule's path does not exist on ``obj``. A model no rule knows is
    logged once and counted (``unknown_models``).
    """
    batch = _current.get()
    if batch is not None:
        return batch.record(model, obj, old=old, event=event, update_fields=update_fields)
    work: Work = {}
    _gather(work, model, obj, old, event, update_fields)
    if work:
        _send_work(work, None, None, _running_loop())
    return len(work)
