"""The requests of ``emu_sanitized.SanitizedEmu`` (execute / call / preprocess), run by the
pycuda backend in this process: kernel tests parametrized over both run the same random
cases on the emulator and on a real GPU, against the same float64 references and bounds."""
from __future__ import annotations

from collections import namedtuple
from typing import Dict, Sequence

import numpy as np

LetterboxTuple = namedtuple("LetterboxTuple", "frame_w frame_h net_w net_h new_w new_h left top")


def gpu_available() -> bool:
    """pycuda imports and sees at least one device."""
    try:
        import pycuda.driver as cuda
        cuda.init()
        return cuda.Device.count() > 0
    except Exception:
        return False


class CudaKernels:
    """Same interface as ``SanitizedEmu``; each request builds a ``cuda`` KernelEngine."""

    def _engine(self, plan, dtype: str):
        from detector.engine.kernel_engine import KernelEngine
        return KernelEngine(plan, "cuda", dtype)

    def execute(self, plan, inputs: Dict[int, np.ndarray], outputs: Sequence[int],
                dtype: str = "fp32") -> Dict[int, np.ndarray]:
        with self._engine(plan, dtype) as eng:
            return eng.execute(inputs, outputs)

    def call(self, plan, blob: np.ndarray, dtype: str = "fp32"):
        """(raw head, boxes, scores) from ``engine(blob)`` and ``engine.decode()``."""
        with self._engine(plan, dtype) as eng:
            raw = eng(np.asarray(blob, np.float32)).copy()
            boxes, scores = eng.decode()
            return raw, boxes.copy(), scores.copy()

    def preprocess(self, plan, frame: np.ndarray, letterbox, dtype: str = "fp32",
                   resize: str = "opencv") -> np.ndarray:
        with self._engine(plan, dtype) as eng:
            eng.preprocess_frame(frame, LetterboxTuple(*letterbox), resize=resize)
            return eng.execute({}, [0])[0]

    def close(self) -> None:
        pass
