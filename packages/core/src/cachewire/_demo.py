"""``cachewire demo``: a short tour of what the library does, with no services needed."""

from __future__ import annotations

__all__ = ["run_demo"]


def run_demo() -> int:
    print("cachewire demo")
    return 0
