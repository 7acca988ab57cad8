"""The ``cuda`` and ``emu`` runners: the FastDSC kernel engine (``engine.kernel_engine``) on a
GPU through pycuda, or compiled for the CPU by the emulation header.

Both run the same data path: the BGR frame is uploaded as bytes and letterboxed by the
preprocess kernel into the engine's input buffer, the network runs, and the region kernel
decodes its output, so only the frame goes in and only boxes and scores come out. The
emulator runs it on the CPU, which is how the GPU path is tested where there is no GPU.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ...host import cuda_device_present
from ..kernel_engine import KernelEngine
from ..plan import Plan
from ..runner import Runner


class KernelRunner(Runner):
    """The kernel engine behind the runner contract. ``dtype``: ``fp32`` or ``fp16`` (the
    engine's storage type; the edges stay float32); other options go to ``KernelEngine``
    (``device``, ``sanitize``, ``threads``, ``max_batch``: buffers for that many frames of
    one call). Not thread-safe (one engine, one thread)."""
    device_preprocess = True
    device_decode = True
    reuses_output = True
    batching = True

    @classmethod
    def create(cls, spec, state, plan_fn, device, precision="fp32", **options) -> "KernelRunner":
        return cls(plan_fn(), **options)

    def __init__(self, plan: Plan, dtype: str = "fp32", **engine_options):
        self.engine = KernelEngine(plan, backend=self.name, dtype=dtype, **engine_options)
        self.precision = dtype
        self.max_batch = self.engine.max_batch

    def __call__(self, blob) -> np.ndarray:
        return self.engine(blob)

    def preprocess(self, frame: np.ndarray, slot: int = 0, resize: str = "opencv"):
        return self.engine.preprocess_frame(frame, slot=slot, resize=resize)

    def decode(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.engine.decode()

    def forward_decoded(self, blob) -> Tuple[np.ndarray, np.ndarray]:
        self.engine.forward(blob)
        return self.engine.decode()

    def close(self) -> None:
        self.engine.close()


class CudaRunner(KernelRunner):
    name = "cuda"
    backend = "cuda"
    requires = ("pycuda",)
    needs = ("pycuda: pip install 'fastdsc-yolo[cuda]' (on Jetson: pip install pycuda with the "
             "JetPack CUDA on PATH)")

    @classmethod
    def available(cls) -> bool:
        return cls.installed() and cuda_device_present()


class EmuRunner(KernelRunner):
    name = "emu"
    backend = "emu"
