"""The CPU cases of the benchmark: our runtimes and the whole per-frame path.

Each builder takes the :class:`~detector.bench.subject.Subject` (a model at a size) and
returns a :class:`~detector.bench.case.Timed`, or raises :class:`~detector.bench.case.Skip`.
Network cases time the network alone on the preprocessed frame; ``frame`` times everything.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..engine.runners import make_runner
from ..engine.runners.ort import OrtRunner
from ..host import bf16_native
from .case import FRAME_H, FRAME_W, Skip, Timed, log
from .int8 import int8_accuracy


def threading_info(runner) -> Optional[Callable[[], dict]]:
    """The adaptive-threading statistics of an ORT runner, for its row after the rounds."""
    picker = getattr(runner, "picker", None)
    return None if picker is None else (lambda: {"threading": picker.stats()})


def forms_note(pointwise) -> str:
    if isinstance(pointwise, dict):
        n = sum(1 for v in pointwise.values() if v == "matmul")
        return f"pointwise: GEMM on {n} layers, 1x1 Conv elsewhere (measured)"
    return "pointwise: " + ("all GEMM" if pointwise == "matmul" else "all 1x1 Conv")


def torch_eager(s, channels_last: bool = False) -> Timed:
    """The reference torch model, eager, NCHW or channels_last."""
    if "torch" not in s.available:
        raise Skip("torch is not installed")
    r = make_runner("torch", s.spec, s.state, s.plan_fn, "cpu", channels_last=channels_last)
    return Timed(lambda: r(s.blob), "eager" + (", channels_last" if channels_last else ""))


def torch_bf16(s) -> Timed:
    """The lowered plan on torch's oneDNN convolutions in bfloat16."""
    r = s.bf16()
    return Timed(lambda: r(s.blob), "bfloat16 oneDNN, fused bias+act"
                 + ("" if bf16_native() else " (emulated: no native bf16)"))


def ort(s) -> Timed:
    """Our ORT runner: the pointwise form per layer as measured, IO binding, adaptive threads."""
    r = s.ort()
    return Timed(lambda: r(s.blob), forms_note(r.pointwise), threading_info(r))


def ort_fixed(s) -> Timed:
    """Our ORT runner on a fixed thread count (physical cores): what adaptive threading
    gains under load."""
    base = s.maybe(s.ort)
    if base is None or base.picker is None:
        raise Skip("onnxruntime missing, or 'ort' already runs a fixed thread count")
    r = OrtRunner(s.plan, pointwise="auto", cache_dir=s.cache_dir, threads=base.threads)
    return Timed(lambda: r(s.blob), f"{r.threads} threads always (no adaptive)")


def ort_gemm(s) -> Timed:
    """Our ORT runner with every pointwise conv as FastDSC's GEMM (the other form)."""
    base = s.maybe(s.ort)
    if base is None or base.pointwise == "matmul":
        raise Skip("onnxruntime missing, or 'ort' already runs every pointwise conv as GEMM")
    r = OrtRunner(s.plan, pointwise="matmul", cache_dir=s.cache_dir, threads=s.threads)
    return Timed(lambda: r(s.blob), "every pointwise conv as GEMM", threading_info(r))


def ort_int8(s) -> Timed:
    """The static int8 graph (opt-in); its accuracy cost against fp32 goes to the records."""
    base = s.ort()
    log(f"{s.tag}: building the int8 graph (calibration on synthetic frames)")
    r = OrtRunner(s.plan, pointwise="conv", cache_dir=s.cache_dir, threads=s.threads,
                  precision="int8")
    s.records.int8[s.tag] = int8_accuracy(s.model, base, r, s.size)
    return Timed(lambda: r(s.blob), "static int8 (QDQ), opt-in", threading_info(r))


def frame(s) -> Timed:
    """``detector.load(model)(frame)`` on the 640x480 frame: letterbox, network (the runtime
    and precision ``detector.load`` picks, or our CUDA kernels in a run with ``cuda``),
    region decode and NMS."""
    det = s.detector()
    how = det.backend + (" bf16" if det.precision == "bf16" else "")
    return Timed(lambda: det(s.frame),
                 f"{FRAME_W}x{FRAME_H} frame, {how}: letterbox+network+decode+NMS",
                 threading_info(det.runner), device="gpu" if det.backend == "cuda" else "cpu")
