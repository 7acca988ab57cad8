"""Where a run computes and in which precision: the device, the autocast dtype of the
forward pass, and how many loader processes feed it."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ParamError
from ..host import bf16_native, logical_cpus
from .options import AMP_MODES


def resolve_device(device: Optional[str]) -> str:
    """``cuda`` where torch sees a GPU, else ``cpu``, for ``None`` or ``auto``."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamError("device", "torch sees no CUDA device", value="cuda")
    return device


def amp_dtype(mode: str, device: str) -> Optional[torch.dtype]:
    """Autocast dtype of the forward pass, or None for fp32: float16 (with loss scaling) on
    CUDA; bfloat16 on CPUs with native bf16 (faster steps there, scripts/bench_train_step.py
    measures it). ``on`` forces bf16 on any CPU (oneDNN emulates it where the hardware lacks
    it)."""
    if mode not in AMP_MODES:
        raise ParamError("amp", f"allowed values: {', '.join(AMP_MODES)}", value=mode)
    if mode == "off":
        return None
    if device == "cuda":
        return torch.float16
    return torch.bfloat16 if mode == "on" or bf16_native() else None


def default_workers() -> int:
    """Loader processes when none are asked for: none on two cores or fewer (loading in the
    training process is faster there), else half the cores, at most 4."""
    cores = logical_cpus()
    return 0 if cores <= 2 else min(4, cores // 2)
