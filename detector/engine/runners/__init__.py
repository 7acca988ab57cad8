"""The runtimes, by name: each one a ``Runner`` (``engine.runner``) in a module of its own.

- ``torch`` (``torch_eager``): the reference nn.Module (CPU or CUDA); needs the unfolded
  weights.
- ``torch-bf16`` (``torch_bf16``): the lowered plan on torch's oneDNN convolutions in
  bfloat16: the ``torch`` backend at ``precision="bf16"``.
- ``ort`` (``ort``): ONNX Runtime on the graph built from the lowered plan (cached on disk).
- ``cuda`` and ``emu`` (``kernels``): our CUDA kernels through pycuda, or compiled for the CPU
  by the emulation header (for testing the GPU path anywhere).

The user-facing backends are ``BACKENDS``; a backend and a precision name one runner
(``runner_name``). The table holds the classes; none of their modules imports torch,
onnxruntime or pycuda before a runner is built. The backend is chosen once, when the
detector is built.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Type

from ...errors import ParamError, UserError
from ..runner import Runner
from .kernels import CudaRunner, EmuRunner
from .ort import OrtRunner
from .torch_bf16 import OneDnnRunner
from .torch_eager import TorchRunner

BACKENDS = ("torch", "ort", "cuda", "emu")

RUNNERS: Dict[str, Type[Runner]] = {
    "torch": TorchRunner,
    "torch-bf16": OneDnnRunner,
    "ort": OrtRunner,
    "cuda": CudaRunner,
    "emu": EmuRunner,
}


def runner_name(backend: str, precision: str = "fp32") -> str:
    """The runner that implements ``backend`` at ``precision``."""
    return "torch-bf16" if (backend, precision) == ("torch", "bf16") else backend


def available_backends() -> List[str]:
    """The backends that can run here (their packages are installed; a GPU for ``cuda``)."""
    return [b for b in BACKENDS if RUNNERS[b].available()]


def default_backend(device: Optional[str] = None) -> str:
    """The fastest backend available here: pycuda kernels on a GPU, else ONNX Runtime, else torch."""
    avail = available_backends()
    if device == "cuda":
        for b in ("cuda", "torch"):
            if b in avail:
                return b
        raise ParamError("device", "no CUDA backend available (install the 'cuda' extra "
                         "(pycuda) on a machine with an NVIDIA driver, or torch with CUDA)",
                         value=device)
    for b in ("ort", "torch"):
        if b in avail:
            return b
    raise UserError("no CPU backend installed: pip install onnxruntime (or torch)")


def _check_precision(backend: str, precision: str) -> None:
    allowed = [p for c in RUNNERS.values() if c.backend == backend for p in c.precisions]
    if precision in allowed:
        return
    if allowed == ["fp32"]:
        raise ParamError("precision", f"is for the torch (bf16) and ort (int8) backends; the "
                         f"{backend} backend runs fp32", value=precision)
    raise ParamError("precision", f"allowed values for the {backend} backend: "
                     f"{', '.join(allowed)}", value=precision)


def make_runner(backend: str, spec, state, plan_fn: Callable[[], object],
                device: Optional[str] = None, max_batch: int = 1, **options) -> Runner:
    """Build the runner for ``backend`` (``precision`` among ``options`` picks the runner
    where a backend has several). ``plan_fn`` lowers the model on demand (not needed by
    torch); ``max_batch``: the most frames one call will take (runtimes that do not batch
    run one; ask the runner's ``max_batch``); the other ``options`` go to the runner."""
    if backend not in BACKENDS:
        raise ParamError("backend", f"is unknown; allowed values: {', '.join(BACKENDS)}",
                         value=backend)
    precision = options.pop("precision", "fp32")
    cls = RUNNERS[runner_name(backend, precision)]
    if not cls.installed():      # a missing device is left to the runner, which says more
        raise ParamError("backend", f"needs {cls.needs}", value=backend)
    _check_precision(backend, precision)
    device = device or ("cuda" if backend == "cuda" else "cpu")
    check_max_batch(max_batch)
    if cls.batching and max_batch > 1:
        options["max_batch"] = max_batch
    return cls.create(spec, state, plan_fn, device, precision, **options)


def check_max_batch(max_batch: int) -> None:
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
        raise ParamError("max_batch", "must be an integer >= 1", value=max_batch)
