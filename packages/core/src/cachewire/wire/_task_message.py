"""`TaskMessage`: the JSON-serialisable description of one task submission."""

from __future__ import annotations

import hashlib
import json
import uuid as uuid_module
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cachewire.errors import PayloadError, TaskError
from cachewire.wire._envelope import Envelope, decode_envelope, encode_envelope

__all__ = ["DUPLICATE_POLICIES", "TaskMessage", "canonical_arguments", "duplicate_key"]

#: The accepted values of ``on_duplicate``.
DUPLICATE_POLICIES = ("parallel", "discard", "serial", "queue_one")


def canonical_arguments(args: Any, kwargs: Mapping[str, Any]) -> str:
    """Canonical JSON of a call's arguments: equal calls give equal text.

    Raises `TaskError` when an argument is not JSON-encodable.
    """
    try:
        return json.dumps(
            [list(args), dict(kwargs)], sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise TaskError(
            f"task arguments must be plain JSON values (str, int, float, bool, None, list, dict); "
            f"got {args!r}, {dict(kwargs)!r}: {exc}"
        ) from exc


def duplicate_key(name: str, args: Any, kwargs: Mapping[str, Any]) -> str:
    """A stable key naming a task call: the task name and a hash of its canonical arguments."""
    digest = hashlib.sha256(canonical_arguments(args, kwargs).encode()).hexdigest()[:32]
    return f"{name}:{digest}"


def _to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _to_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _new_uuid() -> str:
    return uuid_module.uuid4().hex


@attrs.frozen
class TaskMessage:
    """One submission of a task: what to run, with which arguments and options.

    Every field is a plain JSON value so the message can cross processes (`to_json`/`from_json`).
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
        """The message as a dict of JSON values."""
        data = attrs.asdict(self, recurse=False)
        data["args"] = list(self.args)
        return data

    def to_json(self) -> str:
        """The message as an envelope of kind ``task``; raises `TaskError` when arguments are not
        JSON values."""
        canonical_arguments(self.args, self.kwargs)
        return encode_envelope("task", self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes | Envelope) -> TaskMessage:
        """Decode `to_json` output (or its decoded envelope); raises `PayloadError` when it is
        not a task message."""
        envelope = text if isinstance(text, Envelope) else decode_envelope(text)
        if envelope.kind != "task":
            raise PayloadError(f"expected a task message, got a {envelope.kind!r} message")
        data = dict(envelope.body)
        known = {f.name for f in attrs.fields(cls)}
        # Fields added by a newer minor version are optional: ignore what this release lacks.
        data = {k: v for k, v in data.items() if k in known}
        try:
            if not isinstance(data.get("name"), str) or not data["name"]:
                raise TypeError(f"name must be a non-empty string, got {data.get('name')!r}")
            if not isinstance(data.get("args", []), list):
                raise TypeError("args must be a list")
            if not isinstance(data.get("kwargs", {}), dict):
                raise TypeError("kwargs must be an object")
            if not isinstance(data.get("labels", {}), dict):
                raise TypeError("labels must be an object")
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"malformed task message: {exc}") from None
