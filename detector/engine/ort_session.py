"""How ONNX Runtime runs a plan: the ONNX graph of each pointwise form, built once and cached
on disk, and the session options of the fast CPU path.

Used by the ``ort`` runner, the pointwise-form tuner and ``detector bench``; imports
onnxruntime only when a session is configured.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import numpy as np

from ..host import cache_dir as user_cache_dir
from ..io.atomic import atomic_write_bytes
from .onnx_graph import GRAPH_VERSION, plan_to_onnx
from .plan import Plan


def plan_digest(plan: Plan, extra: str = "") -> str:
    """Content hash of a plan (weights + structure + input size) for on-disk caches."""
    h = hashlib.sha256()
    h.update(json.dumps(plan.meta(), sort_keys=True).encode())
    h.update(extra.encode())
    for k in sorted(plan.tensors):
        h.update(k.encode())
        h.update(np.ascontiguousarray(plan.tensors[k]).tobytes())
    return h.hexdigest()[:24]


def onnx_cache_path(plan: Plan, pointwise, cache_dir: Optional[str] = None,
                    ort_ops: bool = True, dynamic_batch: bool = False) -> str:
    d = os.path.join(cache_dir or user_cache_dir(), "onnx")
    key = {"pointwise": pointwise, "graph": GRAPH_VERSION, "ort_ops": ort_ops}
    if dynamic_batch:
        key["dynamic_batch"] = True
    tag = json.dumps(key, sort_keys=True)
    return os.path.join(d, plan_digest(plan, tag) + ".onnx")


def ort_model_path(plan: Plan, pointwise="conv", cache_dir: Optional[str] = None,
                   ort_ops: bool = True, dynamic_batch: bool = False) -> str:
    """The fp32 ONNX graph of ``plan`` in the given pointwise form(s), built once and cached:
    the ``ort`` backend's graph, or with ``ort_ops=False`` the graph ``detector export``
    writes (TensorRT-8 op set); ``dynamic_batch``: its batch axis is free (``N``)."""
    path = onnx_cache_path(plan, pointwise, cache_dir, ort_ops, dynamic_batch)
    if not os.path.isfile(path):
        atomic_write_bytes(path, plan_to_onnx(plan, pointwise, dynamic_batch=dynamic_batch,
                                              ort_ops=ort_ops).SerializeToString())
    return path


def session_options(threads: int, spinning: bool = True):
    """ORT options of the fast CPU path: all graph optimizations (BN already folded; ORT
    fuses Conv/Gemm + activation and runs convolutions in its blocked NCHWc layout), one
    inference at a time on ``threads`` intra-op threads (not pinned), worker threads spinning
    only while a run is in progress. Denormals are not flushed: ORT's
    ``session.set_denormal_as_zero`` also sets flush-to-zero on the *calling* thread, which
    would leak into the user's own numpy/float code after ``detector.load(...)(frame)``."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # Spin between the ops of a run only: when Run() returns, the workers sleep, so they do
    # not take the cores from the rest of the frame (letterbox, NMS), from the other session
    # of adaptive threading, or from other processes.
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts
