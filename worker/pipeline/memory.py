"""Freed memory back to the system between batches.

Each batch allocates and frees the same things (its pickled message, rows, staging text, cache
documents); glibc keeps the pages they leave free inside the heap instead of returning them, so a
worker's resident memory creeps up by the holes. `malloc_trim(0)` returns them: on a 1M-row import the
worker's peak RSS went 90 → 76 MB with the CPU per row within the runs' spread (docs/benchmarks.md). In
the parser process it bought nothing (its memory is the workbook's shared strings) and cost CPU, so only
the worker calls it. A no-op where the C library has no malloc_trim (musl, macOS)."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def return_freed_memory() -> None:
    """Give the heap's free pages back to the system (~0.1-1 ms: once a batch, not a row)."""
    if _TRIM is not None:
        _TRIM(0)
