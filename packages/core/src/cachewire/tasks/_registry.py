"""`TaskRegistry`: the names a worker is allowed to run."""

from __future__ import annotations

import threading
import uuid
import weakref
from typing import TYPE_CHECKING

from cachewire.errors import ConfigurationError, UnknownTaskError

if TYPE_CHECKING:
    from cachewire.tasks._task import Task

__all__ = ["TaskRegistry", "default_registry", "get_registry"]

_named: weakref.WeakValueDictionary[str, TaskRegistry] = weakref.WeakValueDictionary()
_named_lock = threading.Lock()


class TaskRegistry:
    """Maps task names to tasks. Workers run only names found here; nothing is imported by name.

    The global `default_registry` is used unless a task or `run_task` is given another one.
    Messages carry the registry's ``key`` (its name, or a generated one) so a runner in the same
    process finds it again; workers in other processes need a registry of the same ``name``.
    """

    def __init__(self, name: str | None = None, *, _default: bool = False) -> None:
        self.name = name
        #: How messages name this registry (None for the global one).
        self.key: str | None = None if _default else (name or f"anonymous-{uuid.uuid4().hex}")
        self._tasks: dict[str, Task[..., object]] = {}
        self._lock = threading.Lock()
        if self.key is not None:
            with _named_lock:
                if self.key in _named:
                    raise ConfigurationError(
                        f"a TaskRegistry named {name!r} already exists; pick another name"
                    )
                _named[self.key] = self

    def register(self, task: Task[..., object]) -> None:
        """Add a task; raises `ConfigurationError` if another callable holds its name."""
        with self._lock:
            current = self._tasks.get(task.name)
            # The same function defined again (a module reload, a notebook cell run again)
            # replaces the old task; another function under the same name is an error.
            if current is not None and _qualified(current.func) != _qualified(task.func):
                raise ConfigurationError(
                    f"task name {task.name!r} is already registered for {current.func!r}; "
                    f"pass name= to @task to pick another"
                )
            self._tasks[task.name] = task

    def unregister(self, name: str) -> None:
        """Remove a task name (no error if absent)."""
        with self._lock:
            self._tasks.pop(name, None)

    def get(self, name: str) -> Task[..., object]:
        """The task registered under ``name``; raises `UnknownTaskError` if there is none."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(
                f"no task named {name!r} is registered in this process "
                f"({self!r}); import the module that defines it before the worker starts"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        """The registered task names, sorted."""
        return sorted(self._tasks)

    def __repr__(self) -> str:
        label = "default" if self is default_registry else (self.name or hex(id(self)))
        return f"<TaskRegistry {label}: {len(self._tasks)} tasks>"


def _qualified(func: object) -> tuple[object, ...]:
    """What identifies a function across re-definitions: module and qualified name, plus
    where it starts when that name is not unique (a lambda, a function inside another)."""
    qualname = getattr(func, "__qualname__", None)
    if qualname is None:
        return (func,)
    identity: tuple[object, ...] = (getattr(func, "__module__", None), qualname)
    if "<" in qualname:
        code = getattr(func, "__code__", None)
        identity += (getattr(code, "co_filename", None), getattr(code, "co_firstlineno", None))
    return identity


#: The registry `@task` uses when given none.
default_registry = TaskRegistry(_default=True)


def get_registry(name: str | None) -> TaskRegistry:
    """The registry a message names; the global one for None."""
    if name is None:
        return default_registry
    registry = _named.get(name)
    if registry is None:
        raise UnknownTaskError(f"no TaskRegistry named {name!r} exists in this process")
    return registry
