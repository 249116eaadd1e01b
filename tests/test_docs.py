"""Every Python example in docs/*.md runs, so a documented example cannot rot.

Each ``python`` block runs on its own, as a fresh module, after the library's state is reset. It
is compiled with the line numbers of the page, so a failure points at the line in docs/. A block
may ``await`` at top level (as in ``python -m asyncio``); it then runs under ``asyncio.run``.
Markers on the line before a block:

- ``<!-- skip: next -->`` or ``<!-- skip: next: why -->``: the block is not run (the test is
  skipped and shows why); use it sparingly, for blocks that cannot stand alone.

A block that names a service URL (``redis://``, ``amqp://``, ``postgres://``, ``mysql://``) needs
that service: the test skips without it, or fails when ``CI`` is set, like every other test. The
default URLs in a block are replaced by the ones the environment sets (``REDIS_URL``, ...).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_examples import CodeExample, find_examples

from cachewire.testing import require_service, reset_state

DOCS = Path(__file__).resolve().parent.parent / "docs"

_SKIP = re.compile(r"<!--\s*skip:\s*next\b\s*(?::\s*(?P<reason>.*?))?\s*-->")

# scheme -> (service name, environment variable, the default URL docs use)
_SERVICES = {
    "redis://": ("Redis", "REDIS_URL", "redis://127.0.0.1:6379/0"),
    "amqp://": ("RabbitMQ", "AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    "postgres://": ("PostgreSQL", "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
    "postgresql://": ("PostgreSQL", "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql://": ("MariaDB", "MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}


def _marker(example: CodeExample) -> str:
    """The non-blank line just above the block's opening fence (``start_line`` is 1-based)."""
    lines = example.path.read_text("utf-8").splitlines()
    index = example.start_line - 2
    while index >= 0 and not lines[index].strip():
        index -= 1
    return lines[index].strip() if index >= 0 else ""


def _examples() -> Iterator[object]:
    for path in sorted(DOCS.glob("**/*.md")):
        for example in find_examples(path):
            if example.prefix.split()[0] not in ("py", "python"):
                continue
            name = f"{path.relative_to(DOCS)}:{example.start_line}"
            skip = _SKIP.search(_marker(example))
            marks = []
            if skip is not None:
                reason = skip.group("reason") or "marked <!-- skip: next --> in the docs"
                marks.append(pytest.mark.skip(reason=f"{name}: {reason}"))
            yield pytest.param(example, id=name, marks=marks)


def _with_services(source: str) -> str:
    """Check the services the block names, and point it at the environment's URLs."""
    for scheme, (service, variable, default) in _SERVICES.items():
        if scheme not in source:
            continue
        url = os.environ.get(variable, default)
        require_service(service, url)
        source = source.replace(default, url)
    return source


@pytest.fixture
def clean_state() -> Iterator[None]:
    reset_state()
    try:
        yield
    finally:
        reset_state()


def run_example(example: CodeExample) -> dict[str, object]:
    """Run one block as a module of its own; returns the module's namespace."""
    source = _with_services(example.source)
    # Blank lines in front keep the page's line numbers in tracebacks.
    padded = "\n" * example.start_line + source
    code = compile(
        padded, str(example.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    name = f"docs_{example.path.stem}_{example.start_line}".replace("-", "_")
    module = types.ModuleType(name)
    module.__file__ = str(example.path)
    sys.modules[name] = module  # dataclasses, attrs and pickle look classes up here
    try:
        result = eval(code, module.__dict__)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    finally:
        del sys.modules[name]
    return module.__dict__


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("clean_state")
@pytest.mark.parametrize("example", list(_examples()))
def test_docs_example_runs(example: CodeExample) -> None:
    run_example(example)


def test_every_docs_page_is_collected() -> None:
    pages = {Path(str(p.values[0].path)).name for p in _examples()}  # type: ignore[attr-defined]
    with_python = {
        path.name for path in DOCS.glob("**/*.md") if "```python" in path.read_text("utf-8")
    }
    assert with_python and with_python <= pages
