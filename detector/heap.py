"""Keep freed memory in the process heap while PyTorch trains on the CPU.

glibc's malloc serves every block above its mmap threshold (128 KiB to 32 MiB) with a fresh
``mmap`` and returns it to the kernel on ``free``. PyTorch on the CPU frees and re-allocates
the same large activations and gradients on every step, so each step touches every page of
them anew (page faults, and the kernel zeroing every page): a large share of a CPU training
step (``scripts/bench_train_step.py`` measures it; docs/performance.md, "Training").
PyTorch's own CPU tuning guide recommends jemalloc or tcmalloc for the same reason; this
needs no extra library.

:func:`keep_freed_memory` tells glibc to serve large blocks from the heap (no ``mmap``) and
not to hand freed memory back, so a step re-uses the pages the previous step freed. The cost:
the process keeps its peak memory until it exits, which for a training or evaluation run is
what it will use again anyway. ``detector train`` calls it on the CPU (its validation runs
in the same process and profits too), never at import. Elsewhere (not glibc, e.g. musl,
macOS, Windows) it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

# mallopt() parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP = 2**31 - 1               # trim threshold (an int): keep freed heap memory

_done = None


def glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):
        return False


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for re-use (glibc only).
    Returns whether the setting is in effect; idempotent."""
    global _done
    if _done is None:
        _done = False
        if glibc():
            try:
                libc = ctypes.CDLL(None)
                _done = bool(libc.mallopt(_M_MMAP_MAX, 0)) and \
                    bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP))
            except (OSError, AttributeError):
                _done = False
    return _done
