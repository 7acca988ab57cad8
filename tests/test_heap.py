"""detector.heap: with freed memory kept, a large freed block stays in the process and the
next allocation re-uses its pages instead of faulting fresh zeroed ones in (the effect that
makes CPU training steps faster)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from detector.heap import glibc

PROBE = r"""
import json, os, sys
import numpy as np
from detector.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
n = 64 << 20                                   # 64 MiB: above any glibc mmap threshold
base = rss()
a = np.ones(n // 8)                            # touch every page
held = rss() - base
del a
freed = rss() - base                           # what the process still holds after free
b = np.empty(n // 8)
b.fill(1.0)                                    # touch every page of the new block
grown = rss() - base - freed                   # pages the new block had to fault in
print(json.dumps({"kept": kept, "n": n, "held": held, "after_free": freed, "grown": grown}))
"""


def probe(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not glibc(), reason="mallopt tuning is glibc-only")
def test_keep_freed_memory_keeps_a_freed_large_block_for_the_next_allocation():
    plain, kept = probe("plain"), probe("keep")
    assert kept["kept"] is True and plain["kept"] is False
    for r in (plain, kept):
        assert r["held"] >= 0.9 * r["n"]
    # glibc's default: a block this large is mmapped and given back to the kernel on free,
    # so the next step faults (and the kernel zeroes) every page again
    assert plain["after_free"] < 0.1 * plain["n"]
    assert plain["grown"] >= 0.9 * plain["n"]
    # kept: the pages stay in the process and the next allocation of the size re-uses them
    # (the process does not grow when it touches the new block)
    assert kept["after_free"] >= 0.9 * kept["n"]
    assert kept["grown"] < 0.1 * kept["n"]


def test_keep_freed_memory_is_idempotent_and_says_whether_it_applies():
    from detector.heap import keep_freed_memory
    first = keep_freed_memory()
    assert keep_freed_memory() is first
    assert first is glibc()
