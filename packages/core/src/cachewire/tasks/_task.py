"""The `@task` decorator and `Task`: submit a function to a dispatcher with per-call options."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from cachewire._settings import TASK_OPTION_DEFAULTS, get_settings
from cachewire.dispatch import Dispatcher, dispatcher_class, resolve_dispatcher
from cachewire.errors import ConfigurationError, DispatchError
from cachewire.tasks._context import SubmitResult, TaskContext, count
from cachewire.tasks._guard import Guard, LocalGuard, resolve_guard
from cachewire.tasks._message import DUPLICATE_POLICIES, TaskMessage
from cachewire.tasks._registry import TaskRegistry, default_registry

if TYPE_CHECKING:
    from cachewire.tasks._middleware import Middleware

__all__ = ["OPTION_NAMES", "Task", "resolve_dispatcher", "task"]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("cachewire.tasks")


class _Unset:
    def __repr__(self) -> str:
        return "<not given>"


#: "Not given" — distinct from every falsy value a caller may pass on purpose.
UNSET: Any = _Unset()

#: Options `apply_async` accepts; each wins over the decorator, which wins over settings.
OPTION_NAMES = ("queue", "bind", "on_duplicate", "timeout", "dispatcher", "labels")


# Dispatchers given per call as instances cannot travel in a message; the held message's
# dispatcher is remembered here so the runner can release it through the same one.
_held_dispatchers: dict[str, Dispatcher] = {}
_held_lock = threading.Lock()


def _settings_default(option: str) -> Any:
    settings = get_settings()
    if option == "dispatcher":
        return settings.default_dispatcher
    return settings.task_defaults.get(option, TASK_OPTION_DEFAULTS[option])


def _enforcing_names() -> list[str]:
    found: set[str] = set()
    pending = list(Dispatcher.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.name and cls.can_enforce_timeout:
            found.add(cls.name)
        pending.extend(cls.__subclasses__())
    return sorted(found)


def _check_timeout(timeout: Any, where: str) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
        raise ConfigurationError(f"{where} timeout={timeout!r} must be seconds (> 0), 0 or None")
    if timeout < 0:
        raise ConfigurationError(f"{where} timeout={timeout!r} must be >= 0 (0/None = no timeout)")


def _check_enforceable(timeout: Any, dispatcher: Any, where: str) -> None:
    if not timeout:
        return
    cls = dispatcher_class(dispatcher)
    if cls.can_enforce_timeout:
        return
    names = _enforcing_names()
    raise ConfigurationError(
        f"{where} timeout={timeout!r} cannot be enforced by the {cls.name or cls.__name__!r} "
        f"dispatcher; use one that can ({', '.join(names) or 'none registered'}) or drop the "
        f"timeout"
    )


def _check_options(where: str, *, on_duplicate: Any, timeout: Any, labels: Any) -> None:
    """`ConfigurationError` for an invalid option; an option left UNSET is not checked."""
    if on_duplicate is not UNSET and on_duplicate not in DUPLICATE_POLICIES:
        raise ConfigurationError(
            f"{where} on_duplicate={on_duplicate!r} is not a policy; use one of "
            f"{DUPLICATE_POLICIES}"
        )
    if timeout is not UNSET:
        _check_timeout(timeout, where)
    if labels is not UNSET and not isinstance(labels, Mapping):
        raise ConfigurationError(f"{where} labels={labels!r} must be a mapping")


class Task(Generic[P, R]):
    """A function that can be submitted to a dispatcher (`delay`, `apply_async`) or called.

    Calling the task runs the function here and now (no dispatcher, no guard, no middlewares).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        queue: str | Callable[[], str | None] | None = UNSET,
        bind: bool = UNSET,
        on_duplicate: str = UNSET,
        timeout: float | None = UNSET,
        registry: TaskRegistry | None = None,
        dispatcher: str | Dispatcher | type[Dispatcher] | None = UNSET,
        middlewares: Sequence[Middleware] = (),
        labels: Mapping[str, Any] = UNSET,
        guard: Any = UNSET,
    ) -> None:
        if name is None:
            qualname = getattr(func, "__qualname__", "")
            if not qualname or "<lambda>" in qualname or "<locals>" in qualname:
                raise ConfigurationError(
                    f"{func!r} has no importable name; pass @task(name='...') for lambdas and "
                    f"functions defined inside other functions"
                )
            name = f"{func.__module__}.{qualname}"
        where = f"@task {name!r}:"
        _check_options(where, on_duplicate=on_duplicate, timeout=timeout, labels=labels)
        if dispatcher is not UNSET and dispatcher is None:
            dispatcher = UNSET
        if isinstance(dispatcher, type) and issubclass(dispatcher, Dispatcher):
            # One instance per task, so a pool or loop-bound dispatcher is not rebuilt per submit.
            dispatcher = dispatcher()
        if dispatcher is not UNSET:
            dispatcher_class(dispatcher)  # an unknown name fails here, not at the first submit
            if timeout is not UNSET:
                _check_enforceable(timeout, dispatcher, where)
        self.func = func
        self.name = name
        self.is_async = inspect.iscoroutinefunction(func)
        self.registry = registry if registry is not None else default_registry
        self.middlewares: tuple[Middleware, ...] = tuple(middlewares)
        self._options: dict[str, Any] = {
            "queue": queue,
            "bind": bind,
            "on_duplicate": on_duplicate,
            "timeout": timeout,
            "dispatcher": dispatcher,
            "labels": labels,
        }
        self._guard = guard
        functools.update_wrapper(self, func)
        self.registry.register(self)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.resolve_option("bind"):
            message = TaskMessage(name=self.name, args=(), kwargs={})
            return self.func(TaskContext.for_message(message), *args, **kwargs)  # type: ignore[no-any-return]
        return self.func(*args, **kwargs)  # type: ignore[no-any-return]

    def resolve_option(self, option: str, given: Any = UNSET) -> Any:
        """An option's value: ``given`` if given, else the decorator's, else the settings'."""
        if given is not UNSET:
            return given
        value = self._options[option]
        if value is not UNSET:
            return value
        return _settings_default(option)

    @property
    def guard(self) -> Guard:
        """Where this task's duplicate state lives (decorator ``guard``, else settings)."""
        spec = self._guard if self._guard is not UNSET else get_settings().task_guard
        return resolve_guard(spec)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> SubmitResult:
        """Submit with the decorator's options. See `apply_async`."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> SubmitResult:
        """Submit with per-call options (queue, bind, on_duplicate, timeout, dispatcher, labels).

        Returns the `SubmitResult`. Raises `ConfigurationError` for an unknown or invalid option
        (or a timeout the dispatcher cannot enforce), `TaskError` for non-JSON arguments and
        whatever the dispatcher raises when it cannot take the message.
        """
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise ConfigurationError(
                f"unknown task option(s) {unknown} for {self.name!r}; valid options are "
                f"{list(OPTION_NAMES)}"
            )
        where = f"{self.name!r}:"
        values = {opt: self.resolve_option(opt, options.get(opt, UNSET)) for opt in OPTION_NAMES}
        queue = values["queue"]
        if callable(queue):
            queue = queue()
        _check_options(
            where,
            on_duplicate=values["on_duplicate"],
            timeout=values["timeout"],
            labels=values["labels"],
        )
        dispatcher_spec = values["dispatcher"]
        if dispatcher_spec is None:
            dispatcher_spec = get_settings().default_dispatcher
        dispatcher = resolve_dispatcher(dispatcher_spec)
        _check_enforceable(values["timeout"], dispatcher, where)
        message = TaskMessage(
            name=self.name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            queue=queue,
            timeout=values["timeout"],
            bind=bool(values["bind"]),
            on_duplicate=values["on_duplicate"],
            labels=dict(values["labels"]),
            registry=self.registry.key,
            dispatcher=dispatcher_spec if isinstance(dispatcher_spec, str) else None,
        )
        message_json = message.to_json()
        for middleware in self.middlewares:
            middleware.before_submit(message)
        result = self._submit(message, message_json, dispatcher)
        for middleware in self.middlewares:
            middleware.after_submit(message, result)
        return result

    def _submit(
        self, message: TaskMessage, message_json: str, dispatcher: Dispatcher
    ) -> SubmitResult:
        guarded = message.on_duplicate != "parallel"
        if guarded:
            guard = self.guard
            key = message.duplicate_key
            if message.on_duplicate in ("serial", "queue_one") and isinstance(guard, LocalGuard):
                # Remember the dispatcher before the guard can hand the message to a runner. A
                # shared guard may hand it to another process, which resolves the message's
                # dispatcher name or the task's own option instead (nothing is left behind here).
                with _held_lock:
                    _held_dispatchers[message.uuid] = dispatcher
            outcome = guard.admit(key, message.on_duplicate, message_json)
            if outcome != "queued":
                with _held_lock:
                    _held_dispatchers.pop(message.uuid, None)
            if outcome != "accepted":
                count(outcome)
                logger.info(
                    "task %s [%s] %s as a duplicate (on_duplicate=%s)",
                    message.name,
                    message.uuid,
                    outcome,
                    message.on_duplicate,
                )
                return SubmitResult(outcome=outcome, uuid=message.uuid, message=message)
        count("accepted")
        try:
            dispatcher.submit_task(message)
        except BaseException as exc:
            if guarded:
                release_next(self, message.duplicate_key)
            if isinstance(exc, DispatchError | ConfigurationError):
                raise
            if isinstance(exc, Exception):
                raise DispatchError(
                    f"dispatcher {dispatcher.name!r} could not take task {message.name!r}: {exc}"
                ) from exc
            raise
        return SubmitResult(outcome="accepted", uuid=message.uuid, message=message)


def release_next(task_obj: Task[..., Any], key: str) -> None:
    """Finish ``key`` in the task's guard and submit the next held message, if any."""
    try:
        nxt = task_obj.guard.finish(key)
    except Exception:
        logger.exception("task %s: the duplicate guard failed to release %s", task_obj.name, key)
        return
    if nxt is None:
        return
    message = TaskMessage.from_json(nxt)
    with _held_lock:
        dispatcher = _held_dispatchers.pop(message.uuid, None)
    try:
        if dispatcher is None:
            spec = message.dispatcher or task_obj.resolve_option("dispatcher")
            dispatcher = resolve_dispatcher(spec or get_settings().default_dispatcher)
        count("released")
        dispatcher.submit_task(message)
    except Exception:
        logger.exception(
            "task %s [%s]: could not submit the held message", message.name, message.uuid
        )
        release_next(task_obj, key)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    queue: str | Callable[[], str | None] | None = ...,
    bind: Literal[True],
    on_duplicate: str = ...,
    timeout: float | None = ...,
    registry: TaskRegistry | None = ...,
    dispatcher: str | Dispatcher | type[Dispatcher] | None = ...,
    middlewares: Sequence[Middleware] = ...,
    labels: Mapping[str, Any] = ...,
    name: str | None = ...,
    guard: Any = ...,
) -> Callable[[Callable[Concatenate[TaskContext, P], R]], Task[P, R]]: ...


@overload
def task(
    *,
    queue: str | Callable[[], str | None] | None = ...,
    bind: Literal[False] = ...,
    on_duplicate: str = ...,
    timeout: float | None = ...,
    registry: TaskRegistry | None = ...,
    dispatcher: str | Dispatcher | type[Dispatcher] | None = ...,
    middlewares: Sequence[Middleware] = ...,
    labels: Mapping[str, Any] = ...,
    name: str | None = ...,
    guard: Any = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


@overload
def task(
    *,
    queue: str | Callable[[], str | None] | None = ...,
    bind: bool,
    on_duplicate: str = ...,
    timeout: float | None = ...,
    registry: TaskRegistry | None = ...,
    dispatcher: str | Dispatcher | type[Dispatcher] | None = ...,
    middlewares: Sequence[Middleware] = ...,
    labels: Mapping[str, Any] = ...,
    name: str | None = ...,
    guard: Any = ...,
) -> Callable[[Callable[..., R]], Task[..., R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    queue: str | Callable[[], str | None] | None = UNSET,
    bind: bool = UNSET,
    on_duplicate: str = UNSET,
    timeout: float | None = UNSET,
    registry: TaskRegistry | None = None,
    dispatcher: str | Dispatcher | type[Dispatcher] | None = UNSET,
    middlewares: Sequence[Middleware] = (),
    labels: Mapping[str, Any] = UNSET,
    name: str | None = None,
    guard: Any = UNSET,
    **unknown: Any,
) -> Any:
    """Make a sync or async function a `Task`, registered under ``name`` or ``module.qualname``.

    Options not given fall back to settings (``default_dispatcher``, ``task_guard``, ...).
    Raises `ConfigurationError` for an unknown or invalid option, an unknown dispatcher, a
    lambda/local function without ``name``, or a ``timeout`` the dispatcher cannot enforce.
    """
    if unknown:
        raise ConfigurationError(
            f"unknown @task option(s) {sorted(unknown)}; valid options are "
            f"{[*OPTION_NAMES, 'registry', 'middlewares', 'name', 'guard']}"
        )

    def wrap(f: Callable[..., Any]) -> Task[..., Any]:
        return Task(
            f,
            name=name,
            queue=queue,
            bind=bind,
            on_duplicate=on_duplicate,
            timeout=timeout,
            registry=registry,
            dispatcher=dispatcher,
            middlewares=middlewares,
            labels=labels,
            guard=guard,
        )

    if func is not None:
        return wrap(func)
    return wrap
