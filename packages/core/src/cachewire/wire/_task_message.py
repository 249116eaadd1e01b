"""`TaskMessage`: one task submission on the wire (kind ``"task"``)."""

from __future__ import annotations

import hashlib
import math
import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from cachewire.errors import (
    PayloadError,
    TaskArgumentError,
    TaskError,
    TaskMessageError,
    UnsupportedVersionError,
)
from cachewire.wire._envelope import Envelope, check_body, decode_envelope, encode_envelope
from cachewire.wire._keys import key_fragment
from cachewire.wire._portable import (
    from_portable,
    from_portable_arguments,
    to_portable,
    to_portable_arguments,
)
from cachewire.wire._values import bounded_repr

__all__ = ["DUPLICATE_POLICIES", "TaskMessage", "canonical_arguments", "duplicate_key"]

#: The accepted values of ``on_duplicate``.
DUPLICATE_POLICIES = ("parallel", "discard", "serial", "queue_one")


def canonical_arguments(args: Iterable[Any], kwargs: Mapping[str, Any]) -> str:
    """Canonical text of a call's arguments: equal calls (same values, same types, any keyword
    order) give equal text, and no two different calls do.

    Raises `TaskArgumentError` when an argument cannot travel.
    """
    for name in kwargs:
        if not isinstance(name, str):
            raise TaskArgumentError(
                f"task keyword argument names must be str, got {bounded_repr(name)}"
            )
    return key_fragment(
        (tuple(args), dict(kwargs)), where="task arguments", error=TaskArgumentError
    )


def duplicate_key(name: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> str:
    """A stable key naming a task call: the task name and a hash of its canonical arguments."""
    digest = hashlib.sha256(canonical_arguments(args, kwargs).encode()).hexdigest()[:32]
    return f"{name}:{digest}"


def _to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _to_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _new_uuid() -> str:
    return uuid_module.uuid4().hex


# ------------------------------------------------------------------ field checks


def _text(value: Any, field: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value) or len(value) > 1000:
        wanted = "a str (or null)" if optional else "a non-empty str"
        raise TaskMessageError(
            f"a task message's {field!r} must be {wanted}, got {bounded_repr(value)}"
        )
    return value


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if type(value) is int:
        number = float(value) if 0 <= value < 2**53 else math.nan
    else:
        number = value if type(value) is float else math.nan
    if not (math.isfinite(number) and number >= 0):
        raise TaskMessageError(
            f"a task message's 'timeout' must be null or a finite number of seconds >= 0, got "
            f"{bounded_repr(value)}"
        )
    return value  # type: ignore[no-any-return]


def _on_duplicate(value: Any) -> str:
    if not isinstance(value, str) or value not in DUPLICATE_POLICIES:
        raise TaskMessageError(
            f"a task message's 'on_duplicate' must be one of {DUPLICATE_POLICIES}, got "
            f"{bounded_repr(value)}"
        )
    return value


def _bind(value: Any) -> bool:
    if type(value) is not bool:
        raise TaskMessageError(
            f"a task message's 'bind' must be true or false, got {bounded_repr(value)}"
        )
    return value


def _attempt(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 2**31:
        raise TaskMessageError(
            f"a task message's 'attempt' must be an int >= 0, got {bounded_repr(value)}"
        )
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": lambda value: _text(value, "name"),
    "uuid": lambda value: _text(value, "uuid"),
    "queue": lambda value: _text(value, "queue", optional=True),
    "timeout": _timeout,
    "bind": _bind,
    "on_duplicate": _on_duplicate,
    "attempt": _attempt,
    "registry": lambda value: _text(value, "registry", optional=True),
    "dispatcher": lambda value: _text(value, "dispatcher", optional=True),
}
# Only the name is required: the other fields have defaults, as in the constructor.
_REQUIRED = frozenset({"name"})
_OPTIONAL = frozenset(_CHECKS) | {"args", "kwargs", "labels"}


def _object(value: Any, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise TaskMessageError(
            f"a task message's {field!r} must be an object, got {bounded_repr(value)}"
        )
    return value


@attrs.frozen
class TaskMessage:
    """One submission of a task: what to run, with which arguments and options.

    It crosses processes as a wire envelope of kind ``"task"`` (`to_json` / `from_json`); its
    arguments and labels follow the value policy of docs/values.md and come back as the same
    types (a UUID as a UUID, a tuple as a tuple, an aware datetime with its zone).
    """

    name: str
    args: tuple[Any, ...] = attrs.field(default=(), converter=_to_tuple)
    kwargs: dict[str, Any] = attrs.field(factory=dict, converter=_to_dict)
    uuid: str = attrs.field(factory=_new_uuid)
    queue: str | None = None
    timeout: float | None = None
    bind: bool = False
    on_duplicate: str = "parallel"
    labels: dict[str, Any] = attrs.field(factory=dict, converter=_to_dict)
    attempt: int = 1
    #: Name of the `TaskRegistry` holding the task; None is the global registry.
    registry: str | None = None
    #: Dispatcher name given at submit time (instances are not serialisable and stay local).
    dispatcher: str | None = None

    @property
    def duplicate_key(self) -> str:
        """The key under which duplicates of this call are recognised (never the uuid)."""
        return duplicate_key(self.name, self.args, self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The message's fields as a dict (arguments as given, not encoded)."""
        data = attrs.asdict(self, recurse=False)
        data["args"] = list(self.args)
        return data

    def to_body(self) -> dict[str, Any]:
        """The envelope body: every field checked, arguments and labels in portable form.

        Raises `TaskMessageError` for a field of the wrong type and `TaskArgumentError` for an
        argument or label that cannot travel.
        """
        body = {field: check(getattr(self, field)) for field, check in _CHECKS.items()}
        where = f"task {self.name!r}"
        body["args"] = [
            to_portable(value, where=f"{where} argument {index}", error=TaskArgumentError)
            for index, value in enumerate(self.args)
        ]
        body["kwargs"] = _portable_mapping(self.kwargs, f"{where} argument")
        body["labels"] = _portable_mapping(self.labels, f"{where} label")
        return body

    def to_json(self) -> str:
        """The message as envelope text (kind ``"task"``); raises like `to_body`."""
        return encode_envelope("task", self.to_body())

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> TaskMessage:
        """The message in a decoded envelope; `TaskMessageError` (a `PayloadError` and a
        `TaskError`) names the first field that is missing or of the wrong type or value."""
        if envelope.kind != "task":
            raise TaskMessageError(f"expected a task message, got a {envelope.kind!r} message")
        try:
            check_body(envelope, required=_REQUIRED, optional=_OPTIONAL)
        except PayloadError as exc:
            raise TaskMessageError(str(exc)) from None
        body = envelope.body
        fields = {field: check(body[field]) for field, check in _CHECKS.items() if field in body}
        where = f"task {fields['name']!r}"
        args = body.get("args", [])
        if type(args) is not list:
            raise TaskMessageError(f"{where}: 'args' must be a list, got {bounded_repr(args)}")
        fields["args"] = tuple(
            from_portable(value, where=f"{where} argument {index}", error=TaskArgumentError)
            for index, value in enumerate(args)
        )
        kwargs = _object(body.get("kwargs", {}), "kwargs")
        fields["kwargs"] = _decoded_mapping(kwargs, f"{where} argument")
        fields["labels"] = _decoded_mapping(
            _object(body.get("labels", {}), "labels"), f"{where} label"
        )
        return cls(**fields)

    @classmethod
    def from_json(cls, raw: str | bytes | bytearray | Envelope) -> TaskMessage:
        """Decode `to_json` output (or its decoded `Envelope`). Raises `TaskMessageError` when
        ``raw`` is not a task message (never a bare ``KeyError``/``TypeError``/...), and
        `UnsupportedVersionError` when it was written in another major version of the wire."""
        if isinstance(raw, Envelope):
            return cls.from_envelope(raw)
        try:
            envelope = decode_envelope(raw)
        except UnsupportedVersionError:
            raise
        except PayloadError as exc:
            if isinstance(exc, TaskError):
                raise
            raise TaskMessageError(f"not a task message: {exc}") from None
        return cls.from_envelope(envelope)


def _portable_mapping(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    return to_portable_arguments(values, where=where, error=TaskArgumentError)


def _decoded_mapping(values: dict[str, Any], where: str) -> dict[str, Any]:
    return from_portable_arguments(values, where=where, error=TaskArgumentError)
