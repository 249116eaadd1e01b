"""The core stays framework-free and its public surface is what `__all__` says."""

from __future__ import annotations

import subprocess
import sys

import cachewire

FRAMEWORKS = ("django", "celery", "rq", "dramatiq", "redis", "kombu")


def test_importing_cachewire_pulls_in_no_framework() -> None:
    code = (
        "import sys, cachewire, cachewire.cache, cachewire.testing\n"
        f"print(' '.join(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_all_names_exist() -> None:
    for name in cachewire.__all__:
        assert hasattr(cachewire, name), name


def test_every_public_name_of_the_packages_exists() -> None:
    import cachewire.dispatch
    import cachewire.rules
    import cachewire.testing

    for module in (cachewire, cachewire.dispatch, cachewire.rules, cachewire.testing):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
