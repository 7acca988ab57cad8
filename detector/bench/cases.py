"""The case table: every case the benchmark knows, by name, with its builder.

A case is a model at an input size run one way. ``CASES`` maps the name to a
:class:`CaseDef`: the builder (``Subject -> Timed``, or ``Skip``), one line saying what it
runs, whether it is a peer (a runtime a user would run instead of us), and when it runs:
``default`` in every run, ``gpu`` by default where an NVIDIA driver is present, ``opt-in``
only when asked for. The table's order is the order of the rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ParamError, UserError
from ..host import cuda_device_present
from .case import Case, Skip, Timed, log
from .cpu import frame, ort, ort_fixed, ort_gemm, ort_int8, torch_bf16, torch_eager
from .gpu import kernels, tensorrt, torch_cuda
from .peers import opencv_dnn, ort_bare


@dataclass(frozen=True)
class CaseDef:
    build: Callable[..., Timed]
    about: str
    peer: bool = False
    when: str = "default"          # default | gpu | opt-in


CASES: Dict[str, CaseDef] = {
    "torch": CaseDef(torch_eager, "the reference torch model, eager, NCHW"),
    "torch-cl": CaseDef(lambda s: torch_eager(s, channels_last=True),
                        "the same in channels_last"),
    "torch-bf16": CaseDef(torch_bf16, "the lowered plan on torch's oneDNN in bfloat16"),
    "ort": CaseDef(ort, "our ONNX Runtime runner (measured forms, adaptive threads)"),
    "ort-fixed": CaseDef(ort_fixed, "the same on a fixed thread count (physical cores)"),
    "ort-gemm": CaseDef(ort_gemm, "the same with every pointwise conv as GEMM"),
    "ort-int8": CaseDef(ort_int8, "the static int8 graph, and its accuracy cost",
                        when="opt-in"),
    "cuda": CaseDef(kernels, "our CUDA kernels (pycuda), fp32", when="gpu"),
    "cuda-fp16": CaseDef(lambda s: kernels(s, "fp16"), "our CUDA kernels (pycuda), fp16",
                         when="gpu"),
    "frame": CaseDef(frame, "detector.load(...)(frame): letterbox+network+decode+NMS"),
    "ort-bare": CaseDef(ort_bare, "ONNX Runtime, default options, exported graph",
                        peer=True),
    "opencv-dnn": CaseDef(opencv_dnn, "OpenCV's DNN module on the same network",
                          peer=True),
    "torch-cuda": CaseDef(torch_cuda, "the torch model on the GPU (cuDNN), fp32", peer=True,
                          when="gpu"),
    "torch-cuda-fp16": CaseDef(lambda s: torch_cuda(s, half=True),
                               "the torch model on the GPU (cuDNN), fp16", peer=True, when="gpu"),
    "trt": CaseDef(tensorrt, "TensorRT on the exported graph, fp16 allowed", peer=True,
                   when="gpu"),
}
ALL_CASES = tuple(CASES)
OURS = tuple(k for k, d in CASES.items() if not d.peer)
PEERS = tuple(k for k, d in CASES.items() if d.peer)


def select_cases(names: Optional[Sequence[str]], int8: bool = False) -> List[str]:
    """The case names of a run: ``names`` in their order (without repeats), or every
    ``default`` case (and the ``gpu`` ones where there is a GPU); ``int8`` adds ``ort-int8``
    after ``ort``. Raises ParamError ``backends`` for an unknown name."""
    if names is None:
        gpu_here = cuda_device_present()
        names = [k for k, d in CASES.items()
                 if d.when == "default" or (d.when == "gpu" and gpu_here)]
    names = list(dict.fromkeys(names))
    bad = [b for b in names if b not in CASES]
    if bad:
        raise ParamError("backends", f"is unknown; allowed values: {', '.join(ALL_CASES)}",
                         value=bad[0])
    if int8 and "ort-int8" not in names:
        names.insert(names.index("ort") + 1 if "ort" in names else 0, "ort-int8")
    return names


def build_cases(s, names: Sequence[str], skipped: List[dict]) -> List[Case]:
    """The cases ``names`` of subject ``s``; those that cannot run here go to ``skipped``
    with their reason (a backend that fails to build is a note, not a crash)."""
    cases = []
    for name in names:
        d = CASES[name]
        try:
            timed = d.build(s)
        except UserError:
            raise
        except Skip as e:
            skip(skipped, s, name, str(e))
            continue
        except Exception as e:    # a backend that cannot run here: its skip reason
            skip(skipped, s, name, f"{type(e).__name__}: {e}".splitlines()[0])
            continue
        cases.append(Case(s.name, s.size, name, s.family, s.fastdsc, s.gflops,
                          not d.peer, timed))
    return cases


def skip(skipped: List[dict], s, impl: str, reason: str) -> None:
    skipped.append({"model": s.name, "size": s.size, "impl": impl, "reason": reason})
    log(f"skip {s.tag}/{impl}: {reason}")
