"""The worker's glibc malloc thresholds (pipeline.malloc_tuning)."""

from __future__ import annotations

import platform

import pytest

from pipeline import malloc_tuning


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
