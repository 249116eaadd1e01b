"""Reading a rule's attribute paths on objects, mappings and old values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachewire.errors import ConfigurationError

__all__ = ["OldValues", "model_label"]


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


# ------------------------------------------------------------------ reading paths


class _PathMissing(Exception):
    """Raised inside path reading; turned into a `RulePathError` that names the rule."""

    def __init__(self, depth: int, holder: Any, *, in_old: bool = False) -> None:
        self.depth = depth
        self.holder = holder
        self.in_old = in_old


def _walk(obj: Any, parts: tuple[str, ...]) -> Any:
    """Follow ``parts`` through attributes and mapping keys alike; a None on the way is None."""
    current = obj
    for depth, part in enumerate(parts):
        if current is None:
            return None
        if isinstance(current, Mapping):
            try:
                current = current[part]
            except KeyError:
                raise _PathMissing(depth, current) from None
        else:
            try:
                current = getattr(current, part)
            except AttributeError as exc:
                raise _PathMissing(depth, current) from exc
    return current


class OldValues:
    """The state before a change, when only some old values are known.

    ``old=`` given to `changed` as a mapping names the attributes that changed, by the dotted path
    a rule uses (``"customer.id"``) or by the attribute name (``"customer"``, holding an object or
    a mapping). Any other attribute reads from the new object. Rule conditions receive this object:
    attribute and item access both work.
    """

    __slots__ = ("new", "values")

    def __init__(self, values: Mapping[str, Any], new: Any) -> None:
        self.values = values
        self.new = new

    def _given(self, parts: tuple[str, ...]) -> tuple[int, Any] | None:
        """``(how many parts the given value covers, value)`` or None when it is not given."""
        values = self.values
        for size in range(len(parts), 0, -1):
            name = parts[0] if size == 1 else ".".join(parts[:size])
            if name in values:
                return size, values[name]
        return None

    def knows(self, parts: tuple[str, ...]) -> bool:
        """Whether the old value of this path was given."""
        return self._given(parts) is not None

    def read(self, parts: tuple[str, ...]) -> Any:
        given = self._given(parts)
        if given is None:
            return _walk(self.new, parts)
        size, value = given
        try:
            return _walk(value, parts[size:])
        except _PathMissing as missing:
            raise _PathMissing(missing.depth + size, missing.holder, in_old=True) from None

    def __getattr__(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        new = self.new
        return new[name] if isinstance(new, Mapping) else getattr(new, name)

    def __getitem__(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        new = self.new
        return new[name] if isinstance(new, Mapping) else getattr(new, name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except (KeyError, AttributeError):
            return default

    def __repr__(self) -> str:
        return f"OldValues({dict(self.values)!r})"


def _read(obj: Any, parts: tuple[str, ...]) -> Any:
    if type(obj) is OldValues:
        return obj.read(parts)
    return _walk(obj, parts)


# ------------------------------------------------------------------ declaration


def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))
