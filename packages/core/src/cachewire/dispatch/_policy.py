"""The one raise-exception policy used on every path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from cachewire._settings import get_settings

__all__ = ["resolve_raise_exception"]


class _HasRaisePolicy(Protocol):
    @property
    def raise_exception(self) -> bool | None: ...


def resolve_raise_exception(
    rules: Iterable[_HasRaisePolicy | None],
    dispatcher_name: str,
    dispatcher_config: Mapping[str, Any] | None = None,
) -> bool:
    """Whether an error of this work surfaces.

    For each rule: its own ``raise_exception``, else the dispatcher's (the rules'
    ``dispatcher_config["raise_exception"]`` when given, else the ``RAISE_EXCEPTION`` setting),
    else the global ``dispatcher_raise_exception``. In a batch, True wins. ``None`` stands for a
    rule unknown in this process: it follows the dispatcher and global levels.
    """
    settings = get_settings()
    dispatcher_level = (dispatcher_config or {}).get("raise_exception")
    if dispatcher_level is None:
        dispatcher_level = settings.dispatcher_block(dispatcher_name).get("RAISE_EXCEPTION")
    fallback = bool(
        settings.dispatcher_raise_exception if dispatcher_level is None else dispatcher_level
    )
    resolved = [
        fallback if rule is None or rule.raise_exception is None else bool(rule.raise_exception)
        for rule in rules
    ]
    if not resolved:
        return fallback
    return any(resolved)
