"""The exceptions cachewire raises. Every error the library raises derives from `CachewireError`."""

from __future__ import annotations

__all__ = [
    "CacheBackendError",
    "CachedTaskError",
    "CachewireError",
    "ConfigurationError",
    "CreatorCancelledError",
    "DispatchError",
    "DispatcherUnavailableError",
    "DuplicateRuleError",
    "PayloadError",
    "ReentrantCallError",
    "RulePathError",
    "SerializationError",
    "TaskArgumentError",
    "TaskError",
    "TaskMessageError",
    "TaskTimeoutError",
    "UnknownRuleError",
    "UnknownTaskError",
    "UnsupportedVersionError",
    "ValueNotPortableError",
]


class CachewireError(Exception):
    """Base class of every error cachewire raises."""


class ConfigurationError(CachewireError, ValueError):
    """A setting, decorator option or rule is wrong; the message says which and how to fix it."""


class CacheBackendError(CachewireError):
    """The cache backend (Redis, a Django cache, ...) failed or could not be reached."""


class SerializationError(CachewireError, TypeError):
    """A value cannot be stored by the cache's codec without changing it."""


class ReentrantCallError(CachewireError, RuntimeError):
    """A creator asked the cache for the key it is itself computing."""


class CreatorCancelledError(CachewireError):
    """The computation a caller was waiting on was cancelled before it produced a value."""


class DispatchError(CachewireError):
    """A dispatcher could not hand rule or task work to its runtime."""


class DispatcherUnavailableError(ConfigurationError):
    """A dispatcher is registered but its framework is missing; the message names the extra."""


class DuplicateRuleError(ConfigurationError):
    """Two rules were given the same id."""


class RulePathError(ConfigurationError):
    """A rule's path names an attribute or key the changed object does not have."""


class UnknownRuleError(DispatchError):
    """A worker received a rule id that no rule in this process has."""


class PayloadError(DispatchError):
    """A wire payload could not be encoded or decoded."""


class UnsupportedVersionError(PayloadError):
    """A message was written in a wire format this process cannot read (a newer major version)."""


class ValueNotPortableError(SerializationError, PayloadError):
    """A value is outside the one policy of values that can travel (docs/values.md).

    Raised wherever a value would cross a process or become a key: cache keys and partitions,
    rule and task arguments, the JSON codec. The message names where the value came from.
    """


class TaskError(CachewireError):
    """A task could not be submitted or run."""


class TaskMessageError(PayloadError, TaskError):
    """A task message is malformed: a missing field, or one of the wrong type or value."""


class TaskArgumentError(ValueNotPortableError, TaskMessageError):
    """A task argument (or label) is outside the values that can travel."""


class UnknownTaskError(TaskError):
    """A worker was asked to run a task name that its registry does not hold."""


class TaskTimeoutError(TaskError):
    """A task ran longer than its timeout and was cancelled."""


class CachedTaskError(TaskError):
    """A task's earlier failure, cached by `CacheMiddleware` (``cache_errors``) and raised again."""

    def __init__(self, message: str, *, error_type: str = "", error_message: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_message = error_message
