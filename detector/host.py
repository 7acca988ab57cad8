"""Facts about the machine this process runs on, and where it keeps its caches.

One place for what several layers ask: how many cores to use, which CPU it is, whether it
computes bfloat16 in hardware, where the user cache is and how a cache entry is keyed. Reads
``/proc`` and ``/sys`` and the environment only; imports nothing heavy (no torch, no ORT).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from typing import FrozenSet

CACHE_ENV = "FASTDSC_YOLO_CACHE"     # overrides the cache directory as a whole
CACHE_NAME = "fastdsc-yolo"


def logical_cpus() -> int:
    """CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once): the thread count
    for compute-bound inference (a second hyper-thread on a core adds contention, not FLOPs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(c))
    return max(1, len(cores))


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform module says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> FrozenSet[str]:
    """The kernel's CPU feature flags (empty where ``/proc/cpuinfo`` has none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_native() -> bool:
    """The CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16
    kernels are faster than float32 rather than emulated. From the kernel's CPU flags where
    there are any (no torch import: ``detector.load`` asks this before it knows it needs
    torch), else from torch when it is installed."""
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    try:
        import torch
        cpu = torch.cpu
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (ImportError, AttributeError):
        return False


def cuda_device_present() -> bool:
    """True when an NVIDIA driver is present (checked without importing pycuda or torch)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvhost-ctrl")


def cache_dir(*parts: str) -> str:
    """The user cache (``$FASTDSC_YOLO_CACHE``, else ``$XDG_CACHE_HOME/fastdsc-yolo``, else
    ``~/.cache/fastdsc-yolo``), or a folder inside it. Never relative to the working
    directory; nothing is created here."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, CACHE_NAME)
    return os.path.join(os.path.abspath(base), *parts)


def cache_key(what: object) -> str:
    """A short stable hash of a JSON-serialisable description (the name of a cache entry)."""
    blob = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
