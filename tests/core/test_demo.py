"""The README's demo command runs on embedded defaults and shows what it claims."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_shows_one_computation_and_precise_invalidation() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cachewire._cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    assert "creator calls                                1\n" in out
    assert "['price v1']" in out
    assert "[(1, 1), (1, 2), (1, 3)]" in out
    lines = [line.split() for line in out.splitlines() if "customers recomputed" in line]
    assert [(words[0], words[-2:]) for words in lines] == [
        (f"{name}:", ["[7,", "8]"]) for name in ("inline", "threadpool", "asyncio")
    ]
