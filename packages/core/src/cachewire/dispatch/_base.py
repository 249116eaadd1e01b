"""The `Dispatcher` protocol: where rule work and tasks run."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from cachewire._settings import get_settings

if TYPE_CHECKING:
    from cachewire.tasks import TaskMessage

__all__ = ["Dispatcher", "RuleKwargs"]

#: rule id -> the argument sets to invalidate for that rule (plain JSON-encodable values).
RuleKwargs = Mapping[str, Sequence[Mapping[str, Any]]]


class Dispatcher(abc.ABC):
    """Hands rule work (and tasks) to a runtime.

    Subclasses set `name`, implement `dispatch`, and may implement `submit_task`. ``config`` is the
    rule's ``dispatcher_config`` (lower-case keys) and wins over the settings block of `name`.
    """

    name: ClassVar[str] = ""
    #: True when one `dispatch` call may carry several rules.
    supports_batching: ClassVar[bool] = True
    #: True when the runtime can stop a task that exceeds its timeout.
    can_enforce_timeout: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)
        self.validate_config()

    def validate_config(self) -> None:
        """Check ``self.config`` and optional dependencies; raise `ConfigurationError` if wrong."""

    @classmethod
    def settings(cls) -> Mapping[str, Any]:
        """This dispatcher's block of the ``dispatcher_settings`` setting."""
        return get_settings().dispatcher_block(cls.name)

    def option(self, key: str, default: Any = None) -> Any:
        """A config value: the rule's lower-case key, else the settings' UPPER key, else default."""
        if key in self.config:
            return self.config[key]
        return self.settings().get(key.upper(), default)

    def batch_key(self) -> tuple[Any, ...]:
        """Rules whose dispatchers share this key may travel in one `dispatch` call."""
        return (type(self), tuple(sorted((k, repr(v)) for k, v in self.config.items())))

    @abc.abstractmethod
    def dispatch(self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, **context: Any) -> None:
        """Hand the rules to the runtime. May raise; the caller applies the error policy."""

    def submit_task(self, message: TaskMessage) -> None:
        """Run a task message on this runtime. Dispatchers that cannot run tasks raise."""
        from cachewire.errors import DispatchError

        raise DispatchError(f"the {self.name!r} dispatcher cannot run tasks")
