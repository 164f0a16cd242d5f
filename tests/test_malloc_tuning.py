"""The worker's glibc malloc thresholds (pipeline.malloc_tuning)."""

from __future__ import annotations

import platform

import pytest

from pipeline import malloc_tuning
from pipeline.app import create_app
from pipeline.settings import load_settings
from tests.conftest import run_python


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_thresholds_are_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in malloc_tuning.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert malloc_tuning.tune_malloc() == {
        "mmap_threshold": 128 * 1024,
        "trim_threshold": 1024 * 1024,
    }


def test_the_operators_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert malloc_tuning.tune_malloc() == {}


_FRAGMENTED_HEAP = """
import os
from pipeline.malloc_tuning import heap_trimmer

def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

# 40 MiB of 2,000-byte blocks (from glibc's heap, not pymalloc), one in 16 kept: the heap
# cannot shrink from its top, its free pages lie between the blocks still in use
blocks = [bytearray(2000) for _ in range(20_000)]
kept = blocks[::16]
del blocks
before = rss_mib()
trimmed = heap_trimmer()()
print(before, rss_mib(), trimmed)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_trimmer_gives_the_heaps_free_pages_back() -> None:
    before, after, trimmed = run_python(_FRAGMENTED_HEAP).stdout.split()
    assert trimmed == "True"
    # ~37 MiB of the 40 are free pages between kept blocks
    assert float(before) - float(after) > 25, (before, after)


def test_the_worker_trims_its_heap_as_configured() -> None:
    def timers(**settings: float) -> list[str]:
        app = create_app(load_settings(broker_url="127.0.0.1:1", **settings))
        return [task.__name__ for task in app._app_tasks if "memory" in task.__name__]

    expected = ["give_back_free_memory"] if malloc_tuning.heap_trimmer() else []
    assert timers() == expected  # every NPS_MALLOC_TRIM_SECONDS (default 5)
    assert timers(malloc_trim_seconds=0) == []
