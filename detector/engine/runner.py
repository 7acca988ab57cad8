"""The runner contract: what every runtime that executes the network declares and does.

A runner takes the preprocessed input and returns the raw region output. What differs
between runtimes is declared here as class attributes, and callers (the Detector, the
stream pipeline, the benchmark) ask them instead of testing backend names:

- ``name``: the registry name (``ort``, ``torch``, ``torch-bf16``, ``cuda``, ``emu``);
  ``backend``: the user-facing backend it implements (``torch-bf16`` is the ``torch``
  backend at ``precision="bf16"``).
- ``precision``: the arithmetic it runs in (``fp32``, ``fp16``, ``bf16``, ``int8``);
  ``precisions``: the ones ``make_runner`` may ask of it.
- ``device_preprocess``: ``preprocess(frame)`` letterboxes the BGR frame into the runner's
  own input buffer (on the GPU for ``cuda``); the result is only valid for this runner's next
  call, so preprocess and call run on the same thread, one frame at a time.
- ``device_decode``: ``decode()`` gives the region decode of the last call's output
  (boxes and scores), computed by the runtime itself; ``forward_decoded(blob)`` is the call
  and the decode in one go, where the raw output need not reach the host at all.
- ``reuses_output``: the array ``__call__`` returns (and ``decode()``'s) is the runner's own
  buffer, overwritten by the next call: a caller that keeps it past its next call (or hands
  it to another thread) copies it. Runners that say False return a fresh array per call.
- ``batching``: the runtime can run several frames in one call; ``max_batch``: how many one
  call of this runner takes (what it was built for: ``create(..., max_batch=N)``; 1 where
  the runtime does not batch). A batch is a stacked blob ``[n, 3, S, S]`` (``n <= max_batch``),
  or, where ``device_preprocess``, the list of the inputs ``preprocess(frame, slot=i)`` gave
  for slots ``0 .. n-1``; the raw output is then ``[n, ...]`` and ``decode()`` gives
  ``[n, cells, 4]`` and ``[n, cells, C]``. A single input keeps the single-frame shapes.

A runner is built once per detector (buffers, sessions and kernels are allocated then, for
``max_batch`` frames) and runs one call at a time unless it says otherwise. ``create`` builds
one from a model (``make_runner`` in ``engine.runners`` picks the class by name);
``requires`` names the packages it imports, so ``installed()`` and ``available()`` answer
without importing them.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple

import numpy as np


class Runner:
    """Base class of the runtimes (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    backend: ClassVar[str] = ""
    device_preprocess: ClassVar[bool] = False
    device_decode: ClassVar[bool] = False
    reuses_output: ClassVar[bool] = False
    batching: ClassVar[bool] = False             # can run several frames in one call
    precisions: ClassVar[Tuple[str, ...]] = ("fp32",)
    requires: ClassVar[Tuple[str, ...]] = ()     # importable packages the runtime needs
    needs: ClassVar[str] = ""      # what ``requires`` is and how to install it, for errors
    precision: str = "fp32"
    max_batch: int = 1                           # frames one call takes, as built

    @property
    def batches(self) -> bool:
        """Whether one call of this runner takes more than one frame."""
        return self.max_batch > 1

    @classmethod
    def installed(cls) -> bool:
        """Whether the packages it needs are installed (checked without importing them)."""
        return all(importlib.util.find_spec(m) is not None for m in cls.requires)

    @classmethod
    def available(cls) -> bool:
        """Whether this runtime can run here: installed, and the device it needs present."""
        return cls.installed()

    @classmethod
    def create(cls, spec, state: Optional[Dict[str, np.ndarray]], plan_fn: Callable[[], Any],
               device: Optional[str], precision: str = "fp32", **options) -> "Runner":
        """Build the runner for a model: ``spec`` and its unfolded ``state`` (None for a
        lowered plan file), ``plan_fn()`` lowering it on demand; ``options`` are the
        runtime's own keyword arguments (``max_batch`` among them where ``batching``)."""
        raise NotImplementedError

    def __call__(self, blob: Any) -> np.ndarray:
        """Input (a float32 blob ``[1, 3, S, S]``, or what ``preprocess`` returned) -> raw
        region output ``[1, A*(5+C), S/32, S/32]`` float32; a batch (see the module
        docstring) -> ``[n, ...]``."""
        raise NotImplementedError

    def preprocess(self, frame: np.ndarray, slot: int = 0, resize: str = "opencv"):
        """Only where ``device_preprocess``: BGR uint8 frame -> (input, Letterbox), written
        into batch slot ``slot`` (``0 <= slot < max_batch``), resized as ``resize`` says
        (``detector.preprocess.RESIZES``)."""
        raise NotImplementedError(f"the {self.name} runner does not preprocess")

    def decode(self) -> Tuple[np.ndarray, np.ndarray]:
        """Only where ``device_decode``: (boxes [A*H*W, 4] as cx, cy, w, h fractions of the
        input, scores [A*H*W, C]) of the last call, ordered anchor, row, col; after a batch
        call ``[n, A*H*W, 4]`` and ``[n, A*H*W, C]``."""
        raise NotImplementedError(f"the {self.name} runner does not decode")

    def forward_decoded(self, blob: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Only where ``device_decode``: run ``blob`` and return ``decode()``'s arrays."""
        self(blob)
        return self.decode()

    def close(self) -> None:
        """Free what the runner holds (sessions, device memory). Idempotent."""

    def describe(self) -> Dict[str, object]:
        """The declared contract, for notes, ``--stats-json`` and the benchmark."""
        return {"runner": self.name, "backend": self.backend, "precision": self.precision,
                "device_preprocess": self.device_preprocess,
                "device_decode": self.device_decode, "reuses_output": self.reuses_output,
                "max_batch": self.max_batch}
