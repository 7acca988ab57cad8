"""The ``torch`` runner: the reference nn.Module, eager, on the CPU or a CUDA device."""
from __future__ import annotations

import numpy as np

from ...errors import ParamError
from ..runner import Runner


class TorchRunner(Runner):
    """The torch model built from the spec and its unfolded weights (BN not folded).
    Options: ``channels_last`` (memory format of the activations), ``pointwise`` (``gemm``,
    FastDSC's form, or ``conv``); ``max_batch``: the most frames of a call (any stacked
    blob ``[n, 3, S, S]`` runs). Each call returns a new array."""
    name = "torch"
    backend = "torch"
    batching = True
    requires = ("torch",)
    needs = "PyTorch: pip install 'fastdsc-yolo[torch]'"

    @classmethod
    def create(cls, spec, state, plan_fn, device, precision="fp32", **options) -> "TorchRunner":
        if state is None:
            raise ParamError("backend", "needs unfolded weights; a lowered plan file runs on "
                             "ort, cuda or emu (or on torch at precision bf16)", value=cls.backend)
        return cls(spec, state, device or "cpu", **options)

    def __init__(self, spec, state, device: str = "cpu", channels_last: bool = False,
                 pointwise: str = "gemm", max_batch: int = 1):
        import torch
        from ...models.yolov2 import YOLOv2, load_state
        if device == "cuda" and not torch.cuda.is_available():
            raise ParamError("device", "torch sees no CUDA device", value=device)
        self.torch = torch
        self.device = torch.device(device)
        self.model = load_state(YOLOv2(spec, pointwise), state).eval().to(self.device)
        self.channels_last = channels_last
        self.max_batch = max_batch
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()
