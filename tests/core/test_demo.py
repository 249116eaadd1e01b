"""The README's demo command runs on embedded defaults and shows what it claims."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import cachewire


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CI")}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture(scope="module")
def demo_output() -> str:
    result = run("-m", "cachewire", "demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the library's log lines are shown in place, not spilled
    return result.stdout


def row(out: str, label: str) -> str:
    """The value printed after ``label`` (the demo's rows are ``label  value``)."""
    match = re.search(rf"^  {re.escape(label)}\s+(.*)$", out, flags=re.M)
    assert match is not None, f"no row {label!r} in:\n{out}"
    return match.group(1)


def test_demo_shows_one_computation_for_a_thousand_callers(demo_output: str) -> None:
    assert row(demo_output, "callers") == "1000"
    assert row(demo_output, "creator calls") == "1"
    assert row(demo_output, "5 reads after expiry, during the refresh") == "['price v1']"


def test_demo_says_which_partitions_stayed_cached(demo_output: str) -> None:
    out = demo_output
    assert row(out, "recomputed after invalidate(user_id=1)") == "[(1, 1), (1, 2), (1, 3)]"
    assert row(out, "stayed cached (served as hits)") == "[(2, 1), (2, 2), (2, 3)]"
    for name in ("inline", "threadpool", "asyncio"):
        assert row(out, f"{name}: customers recomputed afterwards") == "[7, 8]"
        assert row(out, f"{name}: customers that stayed cached") == "[9]"


def test_demo_shows_duplicate_policies_and_a_timeout(demo_output: str) -> None:
    out = demo_output
    expected = {
        "parallel": "5  {'accepted': 5}",
        "discard": "1  {'accepted': 1, 'discarded': 4}",
        "serial": "5  {'accepted': 1, 'queued': 4}",
        "queue_one": "2  {'accepted': 1, 'discarded': 3, 'queued': 1}",
    }
    for policy, shown in expected.items():
        assert row(out, f"on_duplicate={policy!r}: runs, outcomes") == shown
    assert row(out, "asyncio, timeout=0.05 s: runs that timed out") == "1"
    assert row(out, "logged (and counted as timed_out)") == "task demo.slow_export timed out"
    assert "cannot be enforced by the 'inline'" in row(
        out, "inline, timeout=5: refused at decoration"
    )


def test_demo_ends_with_a_one_line_summary(demo_output: str) -> None:
    last = demo_output.rstrip("\n").splitlines()[-1]
    assert last.startswith("summary: 1000 callers -> 1 computation;")
    assert "3 entries recomputed, 3 stayed cached" in last
    assert "rule invalidation precise on inline, threadpool, asyncio" in last
    assert "parallel 5, discard 1, serial 5, queue_one 2" in last
    assert "1 task timed out" in last


@pytest.mark.parametrize("command", [("-m", "cachewire"), ("-m", "cachewire._cli")])
def test_version(command: tuple[str, ...]) -> None:
    result = run(*command, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cachewire {cachewire.__version__}"


def test_no_command_prints_help_and_fails() -> None:
    result = run("-m", "cachewire")
    assert result.returncode == 2
    assert "demo" in result.stderr
