"""The runner contract: what every runtime that executes the network declares and does.

A runner takes the preprocessed input and returns the raw region output. What differs
between runtimes is declared here as class attributes, and callers (the Detector, the
stream pipeline, the benchmark) ask them instead of testing backend names:

- ``name``: the registry name (``ort``, ``torch``, ``torch-bf16``, ``cuda``, ``emu``);
  ``backend``: the user-facing backend it implements (``torch-bf16`` is the ``torch``
  backend at ``precision="bf16"``).
- ``precision``: the arithmetic it runs in (``fp32``, ``fp16``, ``bf16``, ``int8``).
- ``device_preprocess``: ``preprocess(frame)`` letterboxes the BGR frame into the runner's
  own input buffer (on the GPU for ``cuda``); the result is only valid for this runner's next
  call, so preprocess and call run on the same thread, one frame at a time.
- ``device_decode``: ``decode()`` gives the region decode of the last call's output
  (boxes and scores), computed by the runtime itself.
- ``reuses_output``: the array ``__call__`` returns (and ``decode()``'s) is the runner's own
  buffer, overwritten by the next call: a caller that keeps it past the next call copies it.

A runner is built once per detector (buffers, sessions and kernels are allocated then) and
runs one frame at a time unless it says otherwise.
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, Tuple

import numpy as np


class Runner:
    """Base class of the runtimes (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    backend: ClassVar[str] = ""
    device_preprocess: ClassVar[bool] = False
    device_decode: ClassVar[bool] = False
    reuses_output: ClassVar[bool] = False
    precision: str = "fp32"

    def __call__(self, blob: Any) -> np.ndarray:
        """Input (a float32 blob ``[1, 3, S, S]``, or what ``preprocess`` returned) -> raw
        region output ``[1, A*(5+C), S/32, S/32]`` float32."""
        raise NotImplementedError

    def preprocess(self, frame: np.ndarray):
        """Only where ``device_preprocess``: BGR uint8 frame -> (input, Letterbox)."""
        raise NotImplementedError(f"the {self.name} runner does not preprocess")

    def decode(self) -> Tuple[np.ndarray, np.ndarray]:
        """Only where ``device_decode``: (boxes [A*H*W, 4] as cx, cy, w, h fractions of the
        input, scores [A*H*W, C]) of the last call, ordered anchor, row, col."""
        raise NotImplementedError(f"the {self.name} runner does not decode")

    def close(self) -> None:
        """Free what the runner holds (sessions, device memory). Idempotent."""

    def describe(self) -> Dict[str, object]:
        """The declared contract, for notes, ``--stats-json`` and the benchmark."""
        return {"runner": self.name, "backend": self.backend, "precision": self.precision,
                "device_preprocess": self.device_preprocess,
                "device_decode": self.device_decode, "reuses_output": self.reuses_output}
