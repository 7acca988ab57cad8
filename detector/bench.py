"""``detector bench``: our backends and per-frame path against peer runtimes, in one process.

Every case (a model at an input size run one way) is built first, warmed up, then all cases
run in interleaved rounds (a shuffled order each round), so machine noise hits them alike.
Speed-ups are taken round by round (median over rounds of peer/case) and reported as ratios.

Cases per model and size (``--backends`` picks; peers are marked ``peer``):

- ``torch``, ``torch-cl``: the reference torch model, eager, NCHW and channels_last.
- ``torch-bf16``: the lowered plan on torch's oneDNN convolutions in bfloat16
  (``--precision bf16``, engine/onednn.py; the default where the CPU has native bf16).
- ``ort``: our ONNX Runtime runner (pointwise form per layer as measured, IO binding,
  adaptive threading).
- ``ort-fixed``: the same with a fixed thread count (physical cores): what adaptive
  threading gains under load.
- ``ort-gemm``: the same with every pointwise conv as FastDSC's GEMM (the other form).
- ``ort-int8``: the int8 graph (opt-in; its accuracy cost is measured, see ``--int8``).
- ``cuda``: the pycuda kernel engine, where ``available_backends()`` lists it.
- ``frame``: the whole per-frame path of ``detector.load(...)(frame)`` on a 640x480 frame:
  letterbox + network (the default backend and precision of ``detector.load``) + region
  decode + NMS.
- ``ort-bare`` (peer): ONNX Runtime with default options on the exported graph
  (``detector export --format onnx``: the same network, BN folded, the portable op set),
  ``session.run`` with a feed dict.
- ``opencv-dnn`` (peer): OpenCV's DNN module on the same network, from darknet .cfg/.weights
  written by our writer when this OpenCV has the darknet importer (OpenCV 4), else from the
  exported ONNX graph (OpenCV 5 removed the importer), else skipped with a note.

Network cases time the network alone on the preprocessed frame; ``frame`` times everything.
The roofline is the machine's measured single-precision GEMM peak (numpy and torch).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import UserError

OURS = ("torch", "torch-cl", "torch-bf16", "ort", "ort-fixed", "ort-gemm", "ort-int8", "cuda",
        "frame")
PEERS = ("ort-bare", "opencv-dnn")
ALL_CASES = OURS + PEERS
DEFAULT_MODELS = ("yolov2-voc", "yolov2-voc-fastdsc", "yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc")
# Goals of issue 7: FastDSC frame vs OpenCV-DNN on the regular network of its family.
GOAL_VS_OPENCV = {"yolov2-voc": 6.0, "yolov2-tiny-voc": 5.0}
# ... and FastDSC-YOLOv2's frame no slower than bare ORT running the same graph (network only).
GOAL_VS_BARE = ("yolov2-voc",)
FRAME_W, FRAME_H, FRAME_SEED = 640, 480, 0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Case:
    model: str
    size: int
    impl: str
    family: str                     # the regular network this model derives from
    fastdsc: bool
    gflops: float
    fn: Callable[[], object] = field(repr=False)
    note: str = ""
    times: List[List[float]] = field(default_factory=list, repr=False)   # seconds, per round
    iters: int = 1
    info: Optional[Callable[[], dict]] = field(default=None, repr=False)  # extra JSON after the run

    @property
    def ours(self) -> bool:
        return self.impl in OURS

    @property
    def scope(self) -> str:
        return "frame" if self.impl == "frame" else "network"

    @property
    def key(self) -> str:
        return f"{self.model}@{self.size}/{self.impl}"


# ---- machine ------------------------------------------------------------------------------

def gemm_peak(n: int = 1024, reps: int = 3, best: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """Best single-precision GEMM GFLOP/s of numpy and torch at their default thread counts
    (all cores), and of torch on one thread; ``best`` accumulates the maxima over calls
    (the bench measures between rounds and keeps the best: noise only ever slows it)."""
    out: Dict[str, float] = dict(best or {})

    def keep(key: str, seconds: float) -> None:
        out[key] = max(out.get(key, 0.0), 2.0 * n ** 3 / seconds / 1e9)

    a = np.random.default_rng(0).random((n, n), np.float32)
    b = np.random.default_rng(1).random((n, n), np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    keep("numpy_sgemm_gflops", min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(reps)))
    try:
        import torch
    except ImportError:
        return out
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty(n, n)
    torch.mm(ta, tb, out=tc)
    keep("torch_sgemm_gflops", min(_timed(lambda: torch.mm(ta, tb, out=tc)) for _ in range(reps)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.mm(ta, tb, out=tc)
        keep("torch_sgemm_1thread_gflops",
             min(_timed(lambda: torch.mm(ta, tb, out=tc)) for _ in range(reps)))
    finally:
        torch.set_num_threads(threads)
    return out


def _loadavg() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages: how busy the machine was around the run."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine_info() -> dict:
    import cv2
    from .engine.backends import physical_cores
    from .engine.tune import cpu_model
    info = {"cpu": cpu_model(), "logical_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
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


# ---- building the cases ----------------------------------------------------------------------

def family_of(spec) -> str:
    name = spec.name
    return name[:-len("-fastdsc")] if name.endswith("-fastdsc") else name


def is_fastdsc(spec) -> bool:
    from .models.spec import FastDSC
    return any(isinstance(layer, FastDSC) for layer in spec.layers)


class Builder:
    """Builds the cases of one model at one size; records skipped cases with their reason."""

    def __init__(self, workdir: str, frame: np.ndarray, cache_dir: Optional[str],
                 threads: Optional[int], tune: bool, skipped: List[dict], records: dict):
        self.workdir = workdir
        self.frame = frame
        self.cache_dir = cache_dir
        self.threads = threads
        self.tune = tune
        self.skipped = skipped
        self.records = records

    def skip(self, model: str, size: int, impl: str, reason: str) -> None:
        self.skipped.append({"model": model, "size": size, "impl": impl, "reason": reason})
        log(f"skip {model}@{size}/{impl}: {reason}")

    def build(self, model_name: str, size: int, impls: Sequence[str]) -> List[Case]:
        from .engine.detector import Detector
        from .engine.model_file import read_model
        from .engine.backends import OrtRunner, available_backends, make_runner, ort_model_path
        from .engine.plan import lower
        model = read_model(model_name)
        spec = model.spec
        if model.state is None:
            raise UserError(f"--model {model_name}: bench needs a checkpoint or zoo model, "
                            "not a lowered plan")
        plan = lower(spec, model.state, size, model.names)
        gflops = plan.total_flops() / 1e9
        fam, dsc = family_of(spec), is_fastdsc(spec)
        cases: List[Case] = []
        avail = available_backends()

        def add(impl: str, fn, note: str = "", runner=None) -> None:
            info = None
            if getattr(runner, "picker", None) is not None:
                info = lambda p=runner.picker: {"threading": p.stats()}   # noqa: E731
            cases.append(Case(model_name, size, impl, fam, dsc, gflops, fn, note, info=info))

        tag = f"{model_name}@{size}"
        ort_runner = None
        if "ort" in avail and ({"ort", "ort-fixed", "frame", "ort-gemm", "ort-int8"}
                               & set(impls)):
            if self.tune:
                from .engine.tune import tune_pointwise
                log(f"{tag}: measuring 1x1 Conv vs GEMM per layer")
                self.records[tag] = tune_pointwise(plan, self.cache_dir, self.threads,
                                                   log=lambda m: log(f"{tag}: {m}"))
            ort_runner = OrtRunner(plan, pointwise="auto", cache_dir=self.cache_dir,
                                   threads=self.threads)
        det = bf16_runner = None
        bf16_note = "torch is not installed"
        if ({"torch-bf16", "frame"} & set(impls)) and "torch" in avail:
            from .engine.onednn import OneDnnRunner, bf16_supported
            bf16_note = "this CPU has no oneDNN bf16 convolutions"
            if bf16_supported():
                bf16_runner = OneDnnRunner(plan, "bf16")
        if "frame" in impls:         # what detector.load picks here (measured, cached)
            from .engine.cpu_choice import choose_cpu_runner
            built = {k: r for k, r in (("ort", ort_runner), ("bf16", bf16_runner)) if r}
            backend, runner = choose_cpu_runner(plan, self.cache_dir, built)
            if runner is not None:
                det = Detector(model, backend, runner, size)
        blob = np.empty((1, plan.channels, size, size), np.float32)
        from .preprocess import Preprocessor
        Preprocessor(size, blob)(self.frame)

        for impl in impls:
            try:
                if impl in ("torch", "torch-cl"):
                    if "torch" not in avail:
                        self.skip(model_name, size, impl, "torch is not installed")
                        continue
                    r = make_runner("torch", spec, model.state, lambda: plan, "cpu",
                                    channels_last=(impl == "torch-cl"))
                    add(impl, lambda r=r: r(blob), "eager" + (", channels_last" if impl == "torch-cl" else ""))
                elif impl == "torch-bf16":
                    if bf16_runner is None:
                        self.skip(model_name, size, impl, bf16_note)
                        continue
                    from .engine.onednn import cpu_bf16_native
                    add(impl, lambda r=bf16_runner: r(blob),
                        "bfloat16 oneDNN, fused bias+act" + ("" if cpu_bf16_native()
                                                            else " (emulated: no native bf16)"))
                elif impl == "ort":
                    if ort_runner is None:
                        self.skip(model_name, size, impl, "onnxruntime is not installed")
                        continue
                    add(impl, lambda r=ort_runner: r(blob), _forms_note(ort_runner.pointwise),
                        ort_runner)
                elif impl == "ort-fixed":
                    if ort_runner is None or ort_runner.picker is None:
                        self.skip(model_name, size, impl, "onnxruntime missing, or 'ort' "
                                  "already runs a fixed thread count")
                        continue
                    r = OrtRunner(plan, pointwise="auto", cache_dir=self.cache_dir,
                                  threads=ort_runner.threads)
                    add(impl, lambda r=r: r(blob), f"{r.threads} threads always (no adaptive)")
                elif impl == "ort-gemm":
                    if ort_runner is None or ort_runner.pointwise == "matmul":
                        self.skip(model_name, size, impl, "onnxruntime missing, or 'ort' "
                                  "already runs every pointwise conv as GEMM")
                        continue
                    r = OrtRunner(plan, pointwise="matmul", cache_dir=self.cache_dir,
                                  threads=self.threads)
                    add(impl, lambda r=r: r(blob), "every pointwise conv as GEMM", r)
                elif impl == "ort-int8":
                    if ort_runner is None:
                        self.skip(model_name, size, impl, "onnxruntime is not installed")
                        continue
                    log(f"{tag}: building the int8 graph (calibration on synthetic frames)")
                    r = OrtRunner(plan, pointwise="conv", cache_dir=self.cache_dir,
                                  threads=self.threads, precision="int8")
                    add(impl, lambda r=r: r(blob), "static int8 (QDQ), opt-in", r)
                    self.records.setdefault("int8", {})[tag] = int8_accuracy(
                        model, plan, ort_runner, r, size)
                elif impl == "cuda":
                    if "cuda" not in avail:
                        self.skip(model_name, size, impl, "no CUDA device / pycuda here")
                        continue
                    r = make_runner("cuda", spec, model.state, lambda: plan, "cuda")
                    add(impl, lambda r=r: r(blob), "pycuda kernel engine")
                elif impl == "frame":
                    if det is None:
                        self.skip(model_name, size, impl, "neither onnxruntime nor torch bf16 "
                                  "is available")
                        continue
                    fdet = det
                    if "cuda" in avail and "cuda" in impls:
                        fdet = Detector(model, "cuda", make_runner("cuda", spec, model.state,
                                                                   lambda: plan, "cuda"), size)
                    how = fdet.backend + (" bf16" if getattr(fdet.runner, "precision", "")
                                          == "bf16" else "")
                    add(impl, lambda d=fdet, f=self.frame: d(f),
                        f"{FRAME_W}x{FRAME_H} frame, {how}: letterbox+network+decode+NMS",
                        fdet.runner)
                elif impl == "ort-bare":
                    if "ort" not in avail:
                        self.skip(model_name, size, impl, "onnxruntime is not installed")
                        continue
                    import onnxruntime as ort
                    path = ort_model_path(plan, "conv", self.cache_dir, ort_ops=False)
                    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                    name = sess.get_inputs()[0].name
                    add(impl, lambda s=sess, n=name: s.run(None, {n: blob}),
                        "ORT default options, exported graph")
                elif impl == "opencv-dnn":
                    fn, note = self.opencv(model, plan, size, blob)
                    if fn is None:
                        self.skip(model_name, size, impl, note)
                        continue
                    add(impl, fn, note)
                else:
                    raise UserError(f"--backends {impl!r} is unknown; allowed values: "
                                    f"{', '.join(ALL_CASES)}")
            except UserError:
                raise
            except Exception as e:   # a backend that cannot run here is a note, not a crash
                self.skip(model_name, size, impl, f"{type(e).__name__}: {e}".splitlines()[0])
        return cases

    def opencv(self, model, plan, size: int, blob: np.ndarray):
        import cv2
        from .engine.backends import ort_model_path
        if hasattr(cv2.dnn, "readNetFromDarknet"):
            from .io.darknet_cfg import write_cfg
            from .io.darknet_weights import write_weights
            stem = os.path.join(self.workdir, f"{model.spec.name}-{size}")
            spec = model.spec.replace(size=size)
            write_cfg(spec, stem + ".cfg")
            write_weights(stem + ".weights", spec, model.state)
            net = cv2.dnn.readNetFromDarknet(stem + ".cfg", stem + ".weights")
            note = f"OpenCV {cv2.__version__}, darknet importer"
        elif hasattr(cv2.dnn, "readNetFromONNX"):
            net = cv2.dnn.readNetFromONNX(ort_model_path(plan, "conv", self.cache_dir,
                                                         ort_ops=False))
            note = f"OpenCV {cv2.__version__}, ONNX importer (no darknet importer)"
        else:
            return None, f"OpenCV {cv2.__version__} has no DNN importer"
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

        def fn(net=net):
            net.setInput(blob)
            return net.forward()
        fn()        # fail here (not in the rounds) if the importer built something unrunnable
        return fn, note


def _forms_note(pointwise) -> str:
    if isinstance(pointwise, dict):
        n = sum(1 for v in pointwise.values() if v == "matmul")
        return f"pointwise: GEMM on {n} layers, 1x1 Conv elsewhere (measured)"
    return "pointwise: " + ("all GEMM" if pointwise == "matmul" else "all 1x1 Conv")


# ---- int8 accuracy -------------------------------------------------------------------------------

def int8_accuracy(model, plan, fp32_runner, int8_runner, size: int, frames: int = 8,
                  conf: float = 0.005, top: int = 100) -> dict:
    """What int8 costs: raw-output error and detection agreement with fp32 on synthetic frames
    that were not used for calibration (seeds 0..frames-1). Detections are compared at the
    VOC evaluation threshold (``conf``), best ``top`` per frame: F1 of one-to-one matches
    (same class, IoU >= 0.5), so the check also works for untrained (zoo) weights."""
    from .engine.frames import synthetic_frame
    from .postprocess import postprocess
    from .preprocess import letterbox
    rel, matched, n32, n8 = [], 0, 0, 0
    anchors, classes = list(model.spec.region.anchors), model.spec.classes
    for i in range(frames):
        blob, lb = letterbox(synthetic_frame(FRAME_W, FRAME_H, i), size)
        a = fp32_runner(blob)
        b = int8_runner(blob)
        rel.append(float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12)))
        da = postprocess(a, lb, anchors, classes, model.names, conf)[:top]
        db = postprocess(b, lb, anchors, classes, model.names, conf)[:top]
        n32, n8 = n32 + len(da), n8 + len(db)
        matched += _match(da, db)
    f1 = 2.0 * matched / (n32 + n8) if n32 + n8 else None
    return {"frames": frames, "conf": conf, "top": top, "raw_rel_error": float(np.mean(rel)),
            "fp32_detections": n32, "int8_detections": n8, "matched": matched,
            "detection_f1_vs_fp32": f1}


def _match(a, b, iou: float = 0.5) -> int:
    """Greedy one-to-one matches (same class, IoU >= iou) between two detection lists."""
    used, m = set(), 0
    for d in a:
        for j, e in enumerate(b):
            if j in used or e.class_id != d.class_id:
                continue
            if _iou(d.box, e.box) >= iou:
                used.add(j)
                m += 1
                break
    return m


def _iou(p, q) -> float:
    iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0


# ---- running -------------------------------------------------------------------------------------

# Pause before each case's calls in a round. Without it a case starts while the previous
# one's thread pool still spins (ORT's default sessions keep their workers busy-waiting after
# a run, OpenCV's pool too) and takes a core from it; our adaptive runner then measures two
# threads as slow and runs on one for a while (tiny FastDSC: 10-11 ms per call against 6-7
# with the machine to itself). A deployment runs one model, so each case gets a settled CPU.
SETTLE_S = 0.02


def run_rounds(cases: List[Case], rounds: int, warmup: int, target_s: float, seed: int = 0,
               between: Optional[Callable[[], None]] = None) -> None:
    """Warm each case up, pick its calls per round, then run all of them interleaved, each
    after a ``SETTLE_S`` pause (``between`` runs after each round: the GEMM peak is sampled
    there)."""
    for i, c in enumerate(cases):
        log(f"warm-up {i + 1}/{len(cases)}: {c.key}")
        t = [_timed(c.fn) for _ in range(max(1, warmup))]
        c.iters = int(min(10, max(1, round(target_s / max(min(t), 1e-6)))))
    rng = random.Random(seed)
    for r in range(rounds):
        order = list(cases)
        rng.shuffle(order)
        t0 = time.perf_counter()
        for c in order:
            time.sleep(SETTLE_S)      # the previous case's worker threads stop spinning
            c.times.append([_timed(c.fn) for _ in range(c.iters)])
        if between is not None:
            between()
        log(f"round {r + 1}/{rounds} ({time.perf_counter() - t0:.1f} s)")


def _ratio(peer: Case, case: Case) -> float:
    """Median over rounds of peer time / case time (> 1: the case is faster)."""
    return float(np.median([np.median(p) / np.median(c) for p, c in zip(peer.times, case.times)]))


def summarise(cases: List[Case], peak: float) -> List[dict]:
    rows = []
    for c in cases:
        s = np.concatenate([np.asarray(t) for t in c.times]) * 1e3
        med = float(np.median(s))
        peers = [p for p in cases if not p.ours and p.size == c.size and p.family == c.family]
        fastest = min(peers, key=lambda p: np.median(np.concatenate(p.times))) if peers else None
        ocv = [p for p in peers if p.impl == "opencv-dnn" and not p.fastdsc]
        row = {"model": c.model, "size": c.size, "impl": c.impl, "ours": c.ours,
               "scope": c.scope, "family": c.family, "fastdsc": c.fastdsc,
               "median_ms": med, "p90_ms": float(np.percentile(s, 90)),
               "mean_ms": float(np.mean(s)), "min_ms": float(np.min(s)), "samples": int(s.size),
               "fps": 1000.0 / med, "gflops": c.gflops, "gflops_per_s": c.gflops / (med / 1e3),
               "of_peak": (c.gflops / (med / 1e3)) / peak if peak else None,
               "roofline_ms": c.gflops / peak * 1e3 if peak else None,
               "fastest_peer": fastest.key if fastest else None,
               "vs_fastest_peer": _ratio(fastest, c) if fastest else None,
               "vs_opencv_regular": _ratio(ocv[0], c) if ocv else None,
               "note": c.note}
        if c.info is not None:
            row.update(c.info())
        rows.append(row)
    return rows


def goals(cases: List[Case]) -> List[dict]:
    """Issue 7's done-when checks, from this run's ratios."""
    out = []
    for c in cases:
        if c.impl != "frame" or not c.fastdsc:
            continue
        ocv = next((p for p in cases if p.impl == "opencv-dnn" and not p.fastdsc
                    and p.family == c.family and p.size == c.size), None)
        if ocv is not None and c.family in GOAL_VS_OPENCV:
            v = _ratio(ocv, c)
            out.append({"goal": f"{c.model}@{c.size} frame vs OpenCV-DNN {ocv.model}",
                        "speedup": v, "target": GOAL_VS_OPENCV[c.family],
                        "pass": v >= GOAL_VS_OPENCV[c.family]})
        bare = next((p for p in cases if p.impl == "ort-bare" and p.model == c.model
                     and p.size == c.size), None)
        if bare is not None and c.family in GOAL_VS_BARE:
            v = _ratio(bare, c)
            out.append({"goal": f"{c.model}@{c.size} frame vs bare ORT (network only) on the "
                                f"same graph", "speedup": v, "target": 1.0, "pass": v >= 1.0})
    return out


# ---- per-layer breakdown -------------------------------------------------------------------------

def layer_breakdown(model_name: str, size: int, cache_dir: Optional[str], threads: Optional[int],
                    runs: int = 10) -> List[dict]:
    """Per plan op: kind, output shape, GFLOPs, ORT kernel ms (fastest of ``runs``) with 1x1
    Conv and with GEMM pointwise forms (ORT profiler; the layout reorders a GEMM causes are
    charged to it), the form ``ort`` uses, achieved GFLOP/s."""
    from .engine.model_file import read_model
    from .engine.backends import ort_model_path, physical_cores
    from .engine.plan import lower
    from .engine.tune import LAYOUT, pointwise_ops, profile_ops, tuned_forms
    model = read_model(model_name)
    plan = lower(model.spec, model.state, size, model.names)
    threads = threads or physical_cores()
    chosen = tuned_forms(plan, cache_dir, threads) or "conv"
    pw = set(pointwise_ops(plan))
    # the fastest of ``runs`` runs per op: on a busy machine the median is mostly the noise
    conv = profile_ops(ort_model_path(plan, "conv", cache_dir), plan, threads, runs, stat=np.min)
    mm = profile_ops(ort_model_path(plan, "matmul", cache_dir), plan, threads, runs,
                     charge_layout_to=pw, stat=np.min)
    rows = []
    for op in plan.ops:
        name = op["name"]
        kind = plan.conv_kind(op) if op["op"] == "conv" else op["op"]
        form = None
        if name in pw:
            form = chosen.get(name, "conv") if isinstance(chosen, dict) else chosen
        gf = plan.flops(op) / 1e9
        ms = conv.get(name) if form != "matmul" else mm.get(name)
        rows.append({"op": name, "kind": kind, "out": list(plan.buffers[op["dst"]]),
                     "gflops": gf, "conv_ms": conv.get(name),
                     "gemm_ms": mm.get(name) if name in pw else None, "form": form,
                     "gflops_per_s": gf / (ms / 1e3) if ms and gf else None})
    rows.append({"op": LAYOUT, "kind": "layout", "out": None, "gflops": 0.0,
                 "conv_ms": conv.get(LAYOUT), "gemm_ms": mm.get(LAYOUT), "form": None,
                 "gflops_per_s": None})
    return rows


def cuda_layers(model_name: str, size: int, repeat: int = 10) -> Optional[List[dict]]:
    """Per-op CUDA-event times of the kernel engine (``KernelEngine.profile``) on the
    benchmark frame, for ``--layers`` on a machine with the ``cuda`` backend."""
    try:
        from .engine.kernel_engine import KernelEngine
    except ImportError:
        return None
    from .engine.model_file import read_model
    from .engine.plan import lower
    from .engine.frames import synthetic_frame
    from .preprocess import letterbox
    model = read_model(model_name)
    plan = lower(model.spec, model.state, size, model.names)
    engine = KernelEngine(plan, backend="cuda")
    try:
        engine(letterbox(synthetic_frame(FRAME_W, FRAME_H, FRAME_SEED), size)[0])
        return [{"op": t.name, "kind": t.op, "path": t.path, "ms": t.ms,
                 "gflops": plan.flops(plan.ops[t.index]) / 1e9} for t in engine.profile(repeat)]
    finally:
        engine.close()


# ---- start-up --------------------------------------------------------------------------------

_STARTUP = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import detector
from detector.engine.frames import synthetic_frame
frame = synthetic_frame(640, 480, 0)
t1 = time.perf_counter()
det = detector.load(sys.argv[1])
t2 = time.perf_counter()
det(frame)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_frame_s": t3 - t2,
                  "load_to_first_detection_s": t3 - t1, "backend": det.backend}))
"""


def startup(model: str, runs: int = 2) -> dict:
    """Load-to-first-detection in fresh processes: cold (empty cache dir) then warm."""
    out = {"model": model}
    with tempfile.TemporaryDirectory(prefix="fastdsc-startup-") as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        for label in ["cold"] + ["warm"] * runs:
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", _STARTUP, model], env=env,
                               capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - t
            if p.returncode != 0:
                raise RuntimeError(f"start-up run failed: {p.stderr.strip().splitlines()[-1:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["process_s"] = wall
            if label == "cold":
                out["cold"] = r
            else:
                prev = out.get("warm")
                if prev is None or r["load_to_first_detection_s"] < prev["load_to_first_detection_s"]:
                    out["warm"] = r
            log(f"start-up {label}: load to first detection "
                f"{r['load_to_first_detection_s']:.2f} s (process {wall:.2f} s)")
    return out


# ---- entry point ---------------------------------------------------------------------------------

def bench(models: Sequence[str] = DEFAULT_MODELS, sizes: Sequence[int] = (416,),
          backends: Optional[Sequence[str]] = None, rounds: int = 5, warmup: int = 2,
          layers: bool = False, json_out: Optional[str] = None, int8: bool = False,
          tune: bool = True, threads: Optional[int] = None, target_s: float = 0.25,
          startup_model: Optional[str] = None, cache_dir: Optional[str] = None,
          argv: Optional[List[str]] = None, out=None) -> dict:
    """Run the benchmark; print the table to ``out`` (stdout) and return the JSON record."""
    from .engine.backends import available_backends
    from .engine.frames import synthetic_frame
    out = out or sys.stdout
    if rounds < 1:
        raise UserError(f"--rounds {rounds}: must be at least 1")
    if backends is None:
        backends = [b for b in ALL_CASES if b not in ("ort-int8", "cuda")]
        if "cuda" in available_backends():
            backends.insert(backends.index("frame"), "cuda")
    backends = list(dict.fromkeys(backends))
    if int8 and "ort-int8" not in backends:
        backends.insert(backends.index("ort") + 1 if "ort" in backends else 0, "ort-int8")
    bad = [b for b in backends if b not in ALL_CASES]
    if bad:
        raise UserError(f"--backends {bad[0]!r} is unknown; allowed values: {', '.join(ALL_CASES)}")
    started = datetime.datetime.now().astimezone()
    load_before = _loadavg()
    frame = synthetic_frame(FRAME_W, FRAME_H, FRAME_SEED)
    skipped: List[dict] = []
    records: dict = {}
    cases: List[Case] = []
    with tempfile.TemporaryDirectory(prefix="fastdsc-bench-") as work:
        b = Builder(work, frame, cache_dir, threads, tune, skipped, records)
        for size in sizes:
            for m in models:
                log(f"building {m}@{size}: {', '.join(backends)}")
                cases += b.build(m, size, backends)
        if not cases:
            raise UserError("nothing to run: every case was skipped (see the notes above)")
        log("measuring the GEMM peak")
        roof = gemm_peak()

        def sample_peak() -> None:
            roof.update(gemm_peak(best=roof))
        run_rounds(cases, rounds, warmup, target_s, between=sample_peak)
    # On a busy machine an all-core GEMM is slowed by whoever else runs; one core scaled by
    # the core count is then the better estimate of what the cores can do.
    from .engine.backends import physical_cores
    roof["torch_sgemm_1thread_x_cores_gflops"] = \
        roof.get("torch_sgemm_1thread_gflops", 0.0) * physical_cores()
    peak = max(roof.get("numpy_sgemm_gflops", 0.0), roof.get("torch_sgemm_gflops", 0.0),
               roof["torch_sgemm_1thread_x_cores_gflops"])
    roof["peak_gflops"] = peak
    rows = summarise(cases, peak)
    result = {"command": "detector bench " + " ".join(argv or []), "date": started.isoformat(
        timespec="seconds"), "machine": machine_info(), "threads": threads or None,
              "rounds": rounds, "warmup": warmup,
              "frame": {"width": FRAME_W, "height": FRAME_H, "seed": FRAME_SEED,
                        "kind": "synthetic street scene (detector.engine.frames)"},
              "load_average": {"before": load_before, "after": _loadavg()},
              "roofline": roof, "results": rows, "skipped": skipped,
              "pointwise": {k: v for k, v in records.items() if k != "int8"},
              "int8": records.get("int8", {}), "goals": goals(cases)}
    if layers:
        result["layers"] = {}
        for size in sizes:
            for m in models:
                log(f"per-layer profile {m}@{size}")
                try:
                    result["layers"][f"{m}@{size}"] = layer_breakdown(m, size, cache_dir, threads)
                except ImportError as e:
                    skipped.append({"model": m, "size": size, "impl": "layers", "reason": str(e)})
                if "cuda" in backends and "cuda" in available_backends():
                    rows = cuda_layers(m, size)
                    if rows is not None:
                        result.setdefault("cuda_layers", {})[f"{m}@{size}"] = rows
    if startup_model:
        result["startup"] = startup(startup_model)
    print_report(result, out)
    if json_out:
        from .io.atomic import atomic_write_bytes
        atomic_write_bytes(json_out, (json.dumps(result, indent=1) + "\n").encode())
        log(f"wrote {json_out}")
    return result


# ---- report --------------------------------------------------------------------------------------

def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_report(result: dict, out) -> None:
    r = result["roofline"]
    m = result["machine"]
    print(f"# detector bench, {result['date']}: {m['cpu']}, {m['physical_cores']} cores; "
          f"onnxruntime {m['onnxruntime']}, torch {m['torch']}, OpenCV {m['opencv']}", file=out)
    la = result.get("load_average") or {}
    if la.get("before") and la.get("after"):
        print(f"# load average (1/5/15 min) before {la['before']}, after {la['after']}; "
              f"adaptive ORT threading (ort, frame) follows the load", file=out)
    print(f"# roofline (best sgemm, all cores): numpy {_f(r.get('numpy_sgemm_gflops'), '.0f')} "
          f"GFLOP/s, torch {_f(r.get('torch_sgemm_gflops'), '.0f')} GFLOP/s, torch 1 thread "
          f"{_f(r.get('torch_sgemm_1thread_gflops'), '.0f')} x cores; peak "
          f"{_f(r.get('peak_gflops'), '.0f')} GFLOP/s; {result['rounds']} "
          f"interleaved rounds; x peer = fastest peer / this (same family and size; >1 faster)",
          file=out)
    hdr = (f"{'model':<24} {'size':>4} {'case':<11} {'':4} {'median':>8} {'p90':>8} {'FPS':>7} "
           f"{'GFLOPs':>6} {'GFLOP/s':>7} {'%peak':>5} {'x peer':>6} {'x ocv':>6}  note")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    last = None
    for row in result["results"]:
        grp = (row["size"], row["family"])
        if last is not None and grp != last:
            print("", file=out)
        last = grp
        print(f"{row['model']:<24} {row['size']:>4} {row['impl']:<11} "
              f"{'' if row['ours'] else 'peer':4} {row['median_ms']:8.2f} {row['p90_ms']:8.2f} "
              f"{row['fps']:7.1f} {row['gflops']:6.2f} {row['gflops_per_s']:7.1f} "
              f"{_f(row['of_peak'] and 100 * row['of_peak'], '5.0f')} "
              f"{_f(row['vs_fastest_peer'], '6.2f')} {_f(row['vs_opencv_regular'], '6.2f')}  "
              f"{row['note']}" + (f"; now {row['threading']['current']}" if "threading" in row
                                  else ""), file=out)
    for s in result["skipped"]:
        print(f"skipped {s['model']}@{s['size']}/{s['impl']}: {s['reason']}", file=out)
    for k, rec in result.get("pointwise", {}).items():
        g = rec.get("graphs", {})
        if g:
            print(f"pointwise {k}: 1x1 Conv {_f(g.get('conv'), '.2f')} ms, GEMM "
                  f"{_f(g.get('matmul'), '.2f')} ms"
                  + (f", mixed {g['mixed']:.2f} ms" if "mixed" in g else "")
                  + f" -> {rec.get('chosen', 'conv')}", file=out)
    for k, acc in result.get("int8", {}).items():
        print(f"int8 {k}: raw output rel. error {acc['raw_rel_error']:.3f}, detections vs fp32 "
              f"F1 {_f(acc['detection_f1_vs_fp32'], '.3f')} ({acc['fp32_detections']} fp32 / "
              f"{acc['int8_detections']} int8, best {acc['top']}/frame at conf {acc['conf']}, "
              f"{acc['frames']} frames)",
              file=out)
    for g in result["goals"]:
        print(f"goal {'PASS' if g['pass'] else 'FAIL'}: {g['goal']}: {g['speedup']:.2f}x "
              f"(target {g['target']:.0f}x)", file=out)
    st = result.get("startup")
    if st:
        print(f"start-up {st['model']}: load to first detection cold "
              f"{st['cold']['load_to_first_detection_s']:.2f} s (process "
              f"{st['cold']['process_s']:.2f} s), warm {st['warm']['load_to_first_detection_s']:.2f}"
              f" s (process {st['warm']['process_s']:.2f} s)", file=out)
    for key, rows in result.get("layers", {}).items():
        print(f"\nper-layer {key} (ORT profiler, fastest of 10 runs, ms; GEMM includes the "
              f"layout reorders it causes)", file=out)
        print(f"  {'op':<22} {'kind':<12} {'out':<16} {'GFLOPs':>7} {'conv ms':>8} "
              f"{'GEMM ms':>8} {'form':<6} {'GFLOP/s':>7}", file=out)
        for L in rows:
            shape = "x".join(map(str, L["out"])) if L["out"] else ""
            print(f"  {L['op']:<22} {L['kind']:<12} {shape:<16} {L['gflops']:7.3f} "
                  f"{_f(L['conv_ms'], '8.3f')} {_f(L['gemm_ms'], '8.3f')} {L['form'] or '':<6} "
                  f"{_f(L['gflops_per_s'], '7.1f')}", file=out)
