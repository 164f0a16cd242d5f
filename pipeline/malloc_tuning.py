"""glibc malloc thresholds for the worker: large buffers straight from and back to the OS.

glibc serves a freed block of more than ``M_MMAP_THRESHOLD`` (128 KiB at start) from
its heap the next time, and raises that threshold each time such a block is freed (up to
32 MiB). The worker frees large buffers all the time (fetched record batches, produce
requests, a batch's JSON), so after a while they all come from the heap, interleaved with
the long-lived window state, and the heap cannot shrink around them. Fixed thresholds
(the values of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` below) keep large
buffers in their own mappings, returned when freed. Measured with ``nps-pipeline bench``
(README "Performance"): RSS at the end 278 -> 258 MiB with 10,000 segments and 495 ->
465 MiB with 100,000, throughput unchanged within the machine's spread.

Nothing is changed when the C library is not glibc, or when the environment already sets
either variable (the operator's choice wins).

:func:`heap_trimmer` gives glibc's ``malloc_trim(0)``, which the worker calls every
``NPS_MALLOC_TRIM_SECONDS``: it hands the free pages inside the heap back to the OS (the
thresholds only shrink its top). At 100,000 segments the RSS at the end of
``nps-pipeline bench --events 300000 --segments 100000`` was 426-455 MiB with it (peaks
428-458) against 450-478 without (peaks 454-478), each call 0.3-1.3 ms (fifth session of
2026-11-26).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

#: mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024

ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc, else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018  # glibc only (musl has no such symbol)
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> dict[str, int]:
    """Set the thresholds; returns what was set ({} when nothing was)."""
    if any(name in os.environ for name in ENV_VARS):
        return {}
    libc = _glibc()
    if libc is None:
        return {}
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1:
        applied["mmap_threshold"] = MMAP_THRESHOLD_BYTES
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1:
        applied["trim_threshold"] = TRIM_THRESHOLD_BYTES
    return applied


def heap_trimmer() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` (True when it gave memory back), None elsewhere."""
    libc = _glibc()
    if libc is None:
        return None
    malloc_trim = libc.malloc_trim
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return lambda: bool(malloc_trim(0))
