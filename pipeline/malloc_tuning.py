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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024

ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_malloc() -> dict[str, int]:
    """Set the thresholds; returns what was set ({} when nothing was)."""
    if any(name in os.environ for name in ENV_VARS):
        return {}
    name = ctypes.util.find_library("c")
    if name is None:
        return {}
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  # glibc only (musl has no such symbol)
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1:
        applied["mmap_threshold"] = MMAP_THRESHOLD_BYTES
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1:
        applied["trim_threshold"] = TRIM_THRESHOLD_BYTES
    return applied
