"""The machine a benchmark ran on: versions, cores, load, and its measured fp32 roofline."""
from __future__ import annotations

import os
import platform
from typing import Dict, List, Optional

import cv2
import numpy as np

from ..host import cpu_model, logical_cpus, physical_cores
from ..timing import timed


def machine_info() -> dict:
    """CPU, core counts and the versions of the runtimes the cases use."""
    info = {"cpu": cpu_model(), "logical_cpus": logical_cpus(),
            "physical_cores": physical_cores(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__,
            "opencv_darknet_importer": hasattr(cv2.dnn, "readNetFromDarknet"),
            "opencv_threads": cv2.getNumThreads()}
    for mod in ("onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages: how busy the machine was around the run."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def gemm_peak(n: int = 1024, reps: int = 3, best: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """Best single-precision GEMM GFLOP/s of numpy and torch at their default thread counts
    (all cores), and of torch on one thread; ``best`` accumulates the maxima over calls
    (the bench measures between rounds and keeps the best: noise only ever slows it)."""
    out: Dict[str, float] = dict(best or {})

    def keep(key: str, fn) -> None:
        seconds = min(timed(fn) for _ in range(reps))
        out[key] = max(out.get(key, 0.0), 2.0 * n ** 3 / seconds / 1e9)

    a = np.random.default_rng(0).random((n, n), np.float32)
    b = np.random.default_rng(1).random((n, n), np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    keep("numpy_sgemm_gflops", lambda: np.matmul(a, b, out=c))
    try:
        import torch
    except ImportError:
        return out
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty(n, n)
    torch.mm(ta, tb, out=tc)
    keep("torch_sgemm_gflops", lambda: torch.mm(ta, tb, out=tc))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.mm(ta, tb, out=tc)
        keep("torch_sgemm_1thread_gflops", lambda: torch.mm(ta, tb, out=tc))
    finally:
        torch.set_num_threads(threads)
    return out


class Roofline:
    """The fp32 GEMM peak, sampled before and between the rounds (the best sample counts)."""

    def __init__(self):
        self.samples: Dict[str, float] = gemm_peak()

    def sample(self) -> None:
        self.samples = gemm_peak(best=self.samples)

    def record(self) -> Dict[str, float]:
        """The samples, with the peak the rows compare against. On a busy machine an
        all-core GEMM is slowed by whoever else runs; one core scaled by the core count is
        then the better estimate of what the cores can do."""
        r = dict(self.samples)
        r["torch_sgemm_1thread_x_cores_gflops"] = \
            r.get("torch_sgemm_1thread_gflops", 0.0) * physical_cores()
        r["peak_gflops"] = max(r.get("numpy_sgemm_gflops", 0.0), r.get("torch_sgemm_gflops", 0.0),
                               r["torch_sgemm_1thread_x_cores_gflops"])
        return r
