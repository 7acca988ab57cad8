"""Per-layer choice of the pointwise form (1x1 ``Conv`` or FastDSC's GEMM) for ONNX Runtime,
made from measurements on this machine and cached.

FastDSC computes every pointwise convolution as one GEMM ``W[Cout, Cin] @ X[Cin, H*W]``: on a
GPU that is the fast way. On a CPU, ONNX Runtime runs convolutions in its blocked NCHWc layout
with the activation fused, and a GEMM in the middle of that chain pays two layout reorders;
which form wins depends on the layer and the machine. So both are measured:

1. ``profile_ops`` runs the all-Conv and the all-GEMM graphs with ORT's profiler and sums the
   kernel time of each plan op (layout reorders that a GEMM causes are charged to it);
2. the GEMM form is proposed for the layers where it was faster;
3. the mixed graph is timed against the all-Conv and all-GEMM graphs in interleaved rounds,
   and the fastest whole graph is kept: all-Conv unless another is faster by ``MARGIN``
   (median over rounds) and in ``CONSISTENT`` of the rounds, so noise does not pick it.

The choice is stored in ``<cache>/tune/<key>.json``; the key covers the network structure and
input size (not the weights), the CPU model, the thread count and the ORT and graph versions.
``OrtRunner(pointwise="auto")`` reads it; ``detector bench`` writes it.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Callable, Dict, List, Optional

import numpy as np

from ..host import cache_dir as user_cache_dir
from ..host import cache_key, cpu_model, physical_cores
from ..io.atomic import atomic_write_bytes
from ..timing import round_ratio, round_wins, time_interleaved
from .onnx_graph import GRAPH_VERSION
from .ort_session import ort_model_path, session_options
from .plan import Plan, plan_structure
from .plan_ops import Conv

TUNE_VERSION = 1
MARGIN = 0.03          # a non-default form must be this much faster (median ratio) to be kept
CONSISTENT = 0.75      # ... and faster in at least this fraction of the rounds
LAYOUT = "(layout)"    # profile rows that belong to no plan op (reorders, the final copy)


def tune_key(plan: Plan, threads: int) -> str:
    """Hash of what the timing depends on: structure and size (not weights), CPU, threads,
    ONNX Runtime and graph versions."""
    import onnxruntime as ort
    return cache_key({"structure": plan_structure(plan), "cpu": cpu_model(), "threads": threads,
                      "ort": ort.__version__, "graph": GRAPH_VERSION, "tune": TUNE_VERSION})


def tune_path(plan: Plan, threads: int, cache_dir: Optional[str] = None) -> str:
    return os.path.join(cache_dir or user_cache_dir(), "tune", tune_key(plan, threads) + ".json")


def tuned_forms(plan: Plan, cache_dir: Optional[str] = None, threads: Optional[int] = None):
    """The stored choice for this plan on this machine: ``"conv"``, ``"matmul"`` or a dict
    op-name -> form; None when it was never measured here (or the record is unreadable)."""
    try:
        with open(tune_path(plan, threads or physical_cores(), cache_dir), encoding="utf-8") as f:
            forms = json.load(f).get("forms")
    except (OSError, ValueError, ImportError):
        return None
    if forms in ("conv", "matmul") or (isinstance(forms, dict) and all(
            isinstance(k, str) and v in ("conv", "matmul") for k, v in forms.items())):
        return forms
    return None


def pointwise_ops(plan: Plan) -> List[str]:
    return [op.name for op in plan.ops if isinstance(op, Conv) and plan.conv_kind(op) == "pointwise"]


# ---- per-op profile ------------------------------------------------------------------------

def _op_of_node(node: str, plan: Plan, by_dst: Dict[int, str], names: set) -> Optional[str]:
    node = node[len("fused "):] if node.startswith("fused ") else node
    base = node.split("/", 1)[0]
    if base in names:
        return base
    m = re.match(r"buf(\d+)(_|$)", node)
    if m and int(m.group(1)) in by_dst:
        return by_dst[int(m.group(1))]
    if re.match(r"raw(_|$)", node) and plan.ops:
        return plan.ops[-1].name
    return None


def profile_ops(path: str, plan: Plan, threads: int, runs: int = 10, warmup: int = 2,
                charge_layout_to: Optional[set] = None, blob: Optional[np.ndarray] = None,
                spinning: bool = True, stat=np.median) -> Dict[str, float]:
    """Kernel milliseconds per plan op of the ONNX graph at ``path`` (ORT profiler), the
    ``stat`` (median) over ``runs`` runs.

    Nodes ORT adds (layout reorders) are charged to the adjacent op in ``charge_layout_to``
    (the GEMM-form ops, whose reorders they are) when there is one, else to ``LAYOUT``."""
    import onnxruntime as ort
    opts = session_options(threads, spinning)
    opts.enable_profiling = True
    tmp = tempfile.mkdtemp(prefix="fastdsc-prof-")
    opts.profile_file_prefix = os.path.join(tmp, "ort")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = blob if blob is not None else \
        np.random.default_rng(0).random((1, plan.channels, plan.size, plan.size), np.float32)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(warmup + runs):
        sess.run(None, feed)
    prof = sess.end_profiling()
    try:
        with open(prof, encoding="utf-8") as f:
            events = json.load(f)
    finally:
        try:
            os.unlink(prof)
            os.rmdir(tmp)
        except OSError:
            pass
    names = {op.name for op in plan.ops}
    by_dst = {op.dst: op.name for op in plan.ops}
    charge = charge_layout_to or set()
    # group events per run: each run is one "model_run" event; node events precede its end
    per_run: List[List[tuple]] = [[]]
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            per_run.append([])
        elif e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            per_run[-1].append((e["name"][:-len("_kernel_time")], float(e["dur"]) / 1000.0))
    runs_nodes = [r for r in per_run if r][warmup:] or [r for r in per_run if r]
    totals: Dict[str, List[float]] = {}
    for nodes in runs_nodes:
        ops = [_op_of_node(n, plan, by_dst, names) for n, _ in nodes]
        acc: Dict[str, float] = {}
        for i, (_, ms) in enumerate(nodes):
            op = ops[i]
            if op is None:
                prev = next((o for o in reversed(ops[:i]) if o), None)
                nxt = next((o for o in ops[i + 1:] if o), None)
                op = nxt if nxt in charge else prev if prev in charge else LAYOUT
            acc[op] = acc.get(op, 0.0) + ms
        for k, v in acc.items():
            totals.setdefault(k, []).append(v)
    return {k: float(stat(v)) for k, v in totals.items()}


# ---- the tuner ---------------------------------------------------------------------------------

def tune_pointwise(plan: Plan, cache_dir: Optional[str] = None, threads: Optional[int] = None,
                   runs: int = 10, rounds: int = 7, iters: int = 3,
                   log: Callable[[str], None] = lambda m: None, save: bool = True) -> dict:
    """Measure both pointwise forms per layer, pick the fastest whole graph, store it.

    Returns the record: ``forms`` (the choice), ``layers`` {op: {"conv": ms, "matmul": ms}}
    (fastest profiled run), ``graphs`` {"conv"|"matmul"|"mixed": ms, the median over rounds of
    each round's fastest call}, ``ratio`` (chosen / all-Conv)."""
    import onnxruntime as ort
    threads = threads or physical_cores()
    pw = pointwise_ops(plan)
    record = {"version": TUNE_VERSION, "cpu": cpu_model(), "threads": threads,
              "ort": ort.__version__, "size": plan.size, "layers": {}, "graphs": {},
              "forms": "conv", "ratio": 1.0}
    if not pw:
        return record
    x = np.random.default_rng(0).random((1, plan.channels, plan.size, plan.size), np.float32)
    paths = {"conv": ort_model_path(plan, "conv", cache_dir),
             "matmul": ort_model_path(plan, "matmul", cache_dir)}
    log("profiling 1x1 Conv and GEMM forms per layer")
    prof_conv = profile_ops(paths["conv"], plan, threads, runs, blob=x, stat=np.min)
    prof_mm = profile_ops(paths["matmul"], plan, threads, runs, charge_layout_to=set(pw), blob=x,
                          stat=np.min)
    for name in pw:
        record["layers"][name] = {"conv": prof_conv.get(name), "matmul": prof_mm.get(name)}
    faster = {n: "matmul" for n in pw if (prof_mm.get(n) or 1e9) < (prof_conv.get(n) or 0.0)}
    candidates = {"conv": "conv", "matmul": "matmul"}
    if faster and len(faster) < len(pw):
        candidates["mixed"] = faster
        paths["mixed"] = ort_model_path(plan, faster, cache_dir)
    log(f"timing whole graphs: {', '.join(candidates)}"
        + (f" (GEMM faster on {len(faster)}/{len(pw)} layers)" if "mixed" in candidates else ""))
    opts = session_options(threads)
    sessions = {k: ort.InferenceSession(paths[k], opts, providers=["CPUExecutionProvider"])
                for k in candidates}
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    times = time_interleaved({k: (lambda s=s, f=feeds[k]: s.run(None, f))
                              for k, s in sessions.items()}, rounds=rounds, iters=iters)
    for k, t in times.items():
        record["graphs"][k] = float(np.median([min(r) for r in t])) * 1e3
    best, best_ratio = "conv", 1.0
    for k in candidates:
        if k != "conv":
            r = round_ratio(times[k], times["conv"])
            wins = round_wins(times[k], times["conv"])
            record.setdefault("ratios", {})[k] = r
            record.setdefault("wins", {})[k] = wins
            if r < 1.0 - MARGIN and wins >= CONSISTENT and r < best_ratio:
                best, best_ratio = k, r
    record["forms"] = candidates[best]
    record["chosen"] = best
    record["ratio"] = best_ratio
    if save:
        atomic_write_bytes(tune_path(plan, threads, cache_dir),
                           json.dumps(record, indent=1, sort_keys=True).encode())
    return record
