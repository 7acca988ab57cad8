"""The default CPU runtime of a plan: ONNX Runtime in float32, or torch's bfloat16 oneDNN path,
whichever is faster on this machine, measured once and cached.

Where the CPU computes bf16 in hardware (AVX512-BF16, AMX), the margin depends on the model:
networks whose convolutions are GEMM-bound gain most (bf16 doubles the GEMM rate), models
whose wide early layers are memory-bound gain little, and small inputs shift it again
(docs/performance.md, "bf16", has the figures and bf16's mAP cost). So rather than a rule,
``detector.load`` with no backend times both on the plan (``timing.time_interleaved``:
interleaved rounds in a shuffled order, fastest call per round; three rounds when the answer
is clear, else five) and keeps bf16 only when it is faster by ``MARGIN`` (median over
rounds) in ``CONSISTENT`` of the rounds; ties stay on float32. Without native bf16, torch or
ORT there is nothing to choose.

The record is ``<cache>/cpu_choice/<key>.json``; the key covers the structure and input size
(not the weights), the CPU model and the torch and ORT versions.
"""
from __future__ import annotations

import json
import os
from importlib.metadata import version
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..host import bf16_native, cache_key, cpu_model
from ..host import cache_dir as user_cache_dir
from ..io.atomic import atomic_write_bytes
from ..preprocess import letterbox
from ..timing import round_ratio, round_wins, time_interleaved
from .frames import synthetic_frame
from .plan import Plan, plan_structure
from .runners import available_backends
from .runners.ort import OrtRunner
from .runners.torch_bf16 import OneDnnRunner

CHOICE_VERSION = 1
MARGIN = 0.03
CONSISTENT = 0.75
CHOICES = ("ort", "bf16")


def choice_path(plan: Plan, cache_dir: Optional[str] = None) -> str:
    """The record's path. The versions come from the installed packages' metadata, so a
    cached "ort" choice never imports torch (about a second of start-up)."""
    key = cache_key({"structure": plan_structure(plan), "cpu": cpu_model(),
                     "ort": version("onnxruntime"), "torch": version("torch"),
                     "version": CHOICE_VERSION})
    return os.path.join(cache_dir or user_cache_dir(), "cpu_choice", key + ".json")


def stored_choice(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            choice = json.load(f).get("choice")
    except (OSError, ValueError, AttributeError):
        return None
    return choice if choice in CHOICES else None


def measure(runners: Dict[str, Callable[[np.ndarray], np.ndarray]], plan: Plan,
            max_rounds: int = 5, iters: int = 2, clear: float = 0.10) -> Tuple[str, dict]:
    """(choice, record) from interleaved timing of the ``ort`` and ``bf16`` runners: up to
    ``max_rounds`` rounds (fastest of ``iters`` calls each, order shuffled per round), ending
    after three when every round so far agrees by more than ``clear`` (the first start-up
    of a model pays for this, so a clear case is not timed further)."""
    blob = letterbox(synthetic_frame(640, 480, 0), plan.size)[0]
    fns = {k: (lambda r=r: r(blob)) for k, r in runners.items()}
    times: Dict[str, list] = {k: [] for k in fns}
    for r in range(max_rounds):
        got = time_interleaved(fns, rounds=1, iters=iters, warmup=1 if r == 0 else 0, seed=r)
        for k in fns:
            times[k] += got[k]
        ratios = [min(o) / min(b) for o, b in zip(times["ort"], times["bf16"])]
        if r >= 2 and (min(ratios) > 1 + clear or max(ratios) < 1 - clear):
            break
    speedup = round_ratio(times["ort"], times["bf16"])
    wins = round_wins(times["bf16"], times["ort"])
    choice = "bf16" if speedup >= 1.0 + MARGIN and wins >= CONSISTENT else "ort"
    record = {"choice": choice, "bf16_speedup": speedup, "bf16_wins": wins,
              "ms": {k: [1e3 * min(ts) for ts in v] for k, v in times.items()}}
    return choice, record


def choose_cpu_runner(plan: Plan, cache_dir: Optional[str] = None,
                      runners: Optional[Dict[str, Callable]] = None, max_batch: int = 1):
    """(backend name, runner) for ``plan`` on this CPU: ``("torch", OneDnnRunner bf16)`` or
    ``("ort", OrtRunner)``. ``runners`` may hold already built ``ort``/``bf16`` runners;
    ``max_batch``: the most frames of one call of the runner built."""
    runners = dict(runners or {})
    avail = available_backends()
    can_bf16 = "torch" in avail and bf16_native()
    if "ort" not in avail or not can_bf16:
        if "ort" in avail:
            return "ort", runners.get("ort") or _ort(plan, cache_dir, max_batch)
        if not can_bf16:
            return "torch", None               # the caller builds the eager reference
        return "torch", runners.get("bf16") or _bf16(plan, max_batch)
    path = choice_path(plan, cache_dir)
    choice = stored_choice(path)
    if choice is None:
        runners.setdefault("ort", _ort(plan, cache_dir, max_batch))
        runners.setdefault("bf16", _bf16(plan, max_batch))
        choice, record = measure(runners, plan)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write_bytes(path, json.dumps(record, indent=1).encode())
        except OSError:                         # FileWriteError is one too
            pass                                # a read-only cache only costs a re-measure
    if choice == "bf16":
        return "torch", runners.get("bf16") or _bf16(plan, max_batch)
    return "ort", runners.get("ort") or _ort(plan, cache_dir, max_batch)


def _ort(plan: Plan, cache_dir: Optional[str], max_batch: int = 1):
    return OrtRunner(plan, cache_dir=cache_dir, max_batch=max_batch)


def _bf16(plan: Plan, max_batch: int = 1):
    return OneDnnRunner(plan, "bf16", max_batch=max_batch)
