"""The benchmark scripts still run (tiny sizes): they are not part of the suite's
timing, but a refactor must not break them unnoticed."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "args",
    [
        [
            "tests.bench.bench_windows",
            "--events", "3000", "--segments", "100",
            "--memory-segments", "500", "--memory-buckets", "3",
        ],
        ["tests.bench.bench_text", "--count", "200"],
    ],
)  # fmt: skip
def test_benchmark_runs(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "µs" in done.stdout or "events/s" in done.stdout
