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
    before = set(sys.modules)
    try:
        yield
    finally:
        reset_state()
        for name in set(sys.modules) - before:
            if name.startswith("docs_"):
                del sys.modules[name]


def run_example(example: CodeExample, module: types.ModuleType | None = None) -> types.ModuleType:
    """Run one block as a module of its own (or in ``module``, to continue another block)."""
    source = _with_services(example.source)
    # Blank lines in front keep the page's line numbers in tracebacks.
    padded = "\n" * (example.start_line) + source
    code = compile(
        padded, str(example.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    if module is None:
        name = f"docs_{example.path.stem}_{example.start_line}".replace("-", "_")
        module = types.ModuleType(name)
        module.__file__ = str(example.path)
    sys.modules[module.__name__] = module  # dataclasses, attrs and pickle look classes up here
    result = eval(code, module.__dict__)
    if inspect.iscoroutine(result):
        asyncio.run(result)
    return module


def find_block(page: str, contains: str) -> CodeExample:
    """The one Python block of ``docs/<page>`` whose source contains ``contains``."""
    found = [e for e in find_examples(DOCS / page) if contains in e.source]
    assert len(found) == 1, f"{page}: {len(found)} blocks contain {contains!r}"
    return found[0]


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("clean_state")
@pytest.mark.parametrize("example", list(_examples()))
def test_docs_example_runs(example: CodeExample) -> None:
    run_example(example)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("<!-- skip: next -->", None),
        ("<!-- skip: next: needs a Celery worker -->", "needs a Celery worker"),
        ("<!--skip:next-->", None),
    ],
)
def test_skip_markers_are_read(line: str, reason: str | None) -> None:
    found = _SKIP.search(line)
    assert found is not None
    assert found.group("reason") == reason


def test_every_docs_page_is_collected() -> None:
    pages = {Path(str(p.values[0].path)).name for p in _examples()}  # type: ignore[attr-defined]
    with_python = {
        path.name for path in DOCS.glob("**/*.md") if "```python" in path.read_text("utf-8")
    }
    assert with_python and with_python <= pages


# ---------------------------------------------------------------- "Writing a dispatcher"
# The example dispatcher of docs/dispatchers.md must pass the contract it shows, as written.


def _load_dispatcher_example() -> types.ModuleType:
    module = run_example(find_block("dispatchers.md", "class TinyQueueDispatcher"))
    return run_example(find_block("dispatchers.md", "class TestTinyQueueDispatcher"), module)


try:
    _dispatcher_example = _load_dispatcher_example()
except Exception as error:  # report it as a failing test, not as a collection error
    _load_error = error

    def test_the_writing_a_dispatcher_example_loads() -> None:
        raise _load_error

else:
    from cachewire import register_dispatcher

    class TestWritingADispatcherExample(_dispatcher_example.TestTinyQueueDispatcher):  # type: ignore[name-defined,misc]
        """The contract, run by the docs' own test class against the docs' own dispatcher."""

        @pytest.fixture(autouse=True)
        def _the_example_is_registered(self) -> None:
            # Running the page's blocks again (above) registers another copy under "tiny".
            register_dispatcher(_dispatcher_example.TinyQueueDispatcher)

    @pytest.mark.timeout(60)
    @pytest.mark.usefixtures("clean_state")
    def test_the_writing_a_dispatcher_usage_runs() -> None:
        module = _load_dispatcher_example()
        from cachewire.dispatch import dispatch_stats

        run_example(find_block("dispatchers.md", "def send_receipt"), module)
        assert dispatch_stats.snapshot()["invalidations"] == 1
        assert dispatch_stats.snapshot()["dispatched"] == 1
