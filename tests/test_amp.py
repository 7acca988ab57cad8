"""Mixed-precision choice of `detector train --amp`, and bf16 autocast really training."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from detector.errors import UserError  # noqa: E402
from detector.host import bf16_native  # noqa: E402
from detector.train.device import amp_dtype  # noqa: E402


def test_amp_modes():
    assert amp_dtype("off", "cpu") is None and amp_dtype("off", "cuda") is None
    assert amp_dtype("auto", "cuda") is torch.float16 and amp_dtype("on", "cuda") is torch.float16
    assert amp_dtype("on", "cpu") is torch.bfloat16
    assert amp_dtype("auto", "cpu") is (torch.bfloat16 if bf16_native() else None)
    with pytest.raises(UserError, match="auto, on, off"):
        amp_dtype("fp8", "cpu")


def test_bf16_autocast_gradients_follow_the_fp32_ones():
    # the FastDSC block under CPU bf16 autocast: outputs and gradients close to fp32 (bf16 has
    # 8 mantissa bits), and every parameter gets a gradient
    from detector.models.blocks import FastDSC
    torch.manual_seed(0)
    block = FastDSC(16, 32).train()
    x = torch.randn(4, 16, 24, 24)
    grads = []
    for enabled in (False, True):
        block.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            y = block(x)
        y.float().square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in block.named_parameters()})
    for n, g in grads[0].items():
        g16 = grads[1][n]
        assert torch.isfinite(g16).all()
        cos = torch.nn.functional.cosine_similarity(g.flatten(), g16.flatten(), dim=0)
        assert cos > 0.98, (n, float(cos))
