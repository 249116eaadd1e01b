"""The `Dispatcher` protocol, its declared options and the typed dispatch context."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from cachewire._settings import get_settings
from cachewire.errors import ConfigurationError, DispatchError
from cachewire.wire import encode_rule_work

if TYPE_CHECKING:
    from cachewire.wire import TaskMessage

__all__ = ["FALLBACKS", "DispatchContext", "Dispatcher", "Option", "RuleKwargs"]

#: rule id -> the argument sets to invalidate for that rule (plain JSON-encodable values).
RuleKwargs = Mapping[str, Sequence[Mapping[str, Any]]]

_NO_DEFAULT: Any = object()


@attrs.frozen
class Option:
    """One declared dispatcher option: its accepted type(s), its default and what it is for.

    A rule's ``dispatcher_config`` names it in lower case; a settings block in upper case.
    """

    types: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] = ()

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it fits, else `ConfigurationError` naming ``where``."""
        if value is None and self.default is None:
            return value
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        ok = isinstance(value, types) and not (
            isinstance(value, bool) and bool not in types and int in types
        )
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ConfigurationError(f"{where} = {value!r} must be {names}")
        if self.choices and value not in self.choices:
            raise ConfigurationError(f"{where} = {value!r} must be one of {list(self.choices)}")
        return value


#: What happens when a dispatcher's transport fails: log and count only, or also run inline.
FALLBACKS = ("log", "inline")


@attrs.frozen
class DispatchContext:
    """Where a batch of rule work comes from, handed to `Dispatcher.dispatch`.

    ``origin`` names the source of the change (for logs); ``using`` is the database alias of the
    transaction that made it (Django), ``loop`` the event loop that was running when it was
    recorded, and ``raise_exception`` the resolved error policy of the rules in this call.
    """

    origin: str | None = None
    using: str | None = None
    loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, eq=False, repr=False)
    raise_exception: bool = False

    def for_wire(self) -> dict[str, Any]:
        """The part of the context that can travel to a worker; ``raise`` (present only when
        True) makes the worker raise rule errors whatever its own settings say."""
        wire: dict[str, Any] = {}
        if self.origin is not None:
            wire["origin"] = self.origin
        if self.using is not None:
            wire["using"] = self.using
        if self.raise_exception:
            wire["raise"] = True
        return wire


class Dispatcher(abc.ABC):
    """Hands rule work (and tasks) to a runtime.

    Subclasses set `name`, declare their `options`, implement `dispatch`, and may implement
    `submit_task`. ``config`` is the rule's ``dispatcher_config`` (lower-case keys) and wins over
    the settings block of `name` (upper-case keys); both are checked against `options`.
    """

    name: ClassVar[str] = ""
    #: True when one `dispatch` call may carry several rules.
    supports_batching: ClassVar[bool] = True
    #: True when the runtime can stop a task that exceeds its timeout.
    can_enforce_timeout: ClassVar[bool] = False
    #: True when `dispatch` writes into the transaction of the data change (a database queue):
    #: a framework adapter then dispatches during the transaction, so the work commits or rolls
    #: back with the change, instead of waiting for the commit.
    runs_in_transaction: ClassVar[bool] = False
    #: The options this dispatcher reads, by lower-case name (subclasses add theirs).
    options: ClassVar[Mapping[str, Option]] = {}
    #: Options every dispatcher has.
    common_options: ClassVar[Mapping[str, Option]] = {
        "raise_exception": Option(
            bool, None, "raise rule errors to the caller or runtime (else log and count)"
        ),
        "fallback": Option(
            str,
            "log",
            "when the transport fails: 'log' (log and count) or 'inline' (also run here)",
            FALLBACKS,
        ),
    }

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = self.check_config(config, where="dispatcher_config")
        self.validate_config()

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """Every option of this dispatcher: the common ones and its own."""
        return {**cls.common_options, **cls.options}

    @classmethod
    def check_config(cls, config: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        """``config`` with lower-case keys, checked against `declared_options`.

        Raises `ConfigurationError` for an unknown key or a value of the wrong type.
        """
        declared = cls.declared_options()
        checked: dict[str, Any] = {}
        for key, value in config.items():
            lower = str(key).lower()
            option = declared.get(lower)
            if option is None:
                raise ConfigurationError(
                    f"{where}: the {cls.name or cls.__name__!r} dispatcher has no option "
                    f"{key!r}; its options are {sorted(declared)}"
                )
            checked[lower] = option.check(value, f"{where}[{key!r}]")
        return checked

    def validate_config(self) -> None:
        """Check what `check_config` cannot (optional dependencies, combinations); raise
        `ConfigurationError` if wrong."""

    @classmethod
    def settings(cls) -> Mapping[str, Any]:
        """This dispatcher's block of the ``dispatcher_settings`` setting."""
        return get_settings().dispatcher_block(cls.name)

    def option(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        """A config value: the rule's lower-case key, else the settings' UPPER key, else the
        declared default (or ``default`` when given)."""
        if key in self.config:
            return self.config[key]
        block = self.settings()
        upper = key.upper()
        if upper in block:
            return block[upper]
        if default is not _NO_DEFAULT:
            return default
        declared = self.declared_options().get(key)
        return None if declared is None else declared.default

    def batch_key(self) -> tuple[Any, ...]:
        """Rules whose dispatchers share this key may travel in one `dispatch` call. Read once
        per rule and settings snapshot: it must depend on the configuration only."""
        return (type(self), tuple(sorted((k, repr(v)) for k, v in self.config.items())))

    def encode_rules(
        self, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> str:
        """The wire body of rule work, for dispatchers that send it to another process; a worker
        hands it to `cachewire.run_work`."""
        return encode_rule_work(rule_ids, rule_kwargs, context.for_wire())

    @abc.abstractmethod
    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: RuleKwargs, context: DispatchContext
    ) -> None:
        """Hand the rules to the runtime. May raise; the caller applies the error policy."""

    def submit_task(self, message: TaskMessage) -> None:
        """Run a task message on this runtime (brokers send ``message.to_json()``). Dispatchers
        that cannot run tasks raise `DispatchError`."""
        raise DispatchError(f"the {self.name!r} dispatcher cannot run tasks")
