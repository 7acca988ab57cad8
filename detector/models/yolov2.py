"""The YOLOv2 network (torch), built layer by layer from a ModelSpec.

``model.layers[i]`` is darknet's layer ``i``; the output is the raw region tensor
``(N, num*(5+classes), H/32, W/32)`` that ``detector.postprocess`` decodes (for a classifier
spec, without a region: its last layer's output).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn

from .blocks import (ConvBNAct, DarknetSoftmax, FastDSC, GlobalAvgPool, MaxPoolDarknet, Reorg,
                     Route)
from .spec import ModelSpec, with_classes
from .spec import Route as RouteSpec
from .spec_yaml import load_spec

# Spec layer type -> its torch module, from the layer, its input channels, the absolute
# indices a route reads, and the pointwise implementation of FastDSC blocks.
MODULES = {
    "conv": lambda s, cin, sources, pointwise: ConvBNAct(
        cin, s.filters, s.size, s.stride, s.padding, s.groups, s.bn, s.act),
    "fastdsc": lambda s, cin, sources, pointwise: FastDSC(
        cin, s.filters, s.size, s.stride, s.multiplier, s.order, s.mid_bn, s.mid_act, s.bn,
        s.act, pointwise, s.terms),
    "maxpool": lambda s, cin, sources, pointwise: MaxPoolDarknet(s.size, s.stride, s.padding),
    "reorg": lambda s, cin, sources, pointwise: Reorg(s.stride),
    "route": lambda s, cin, sources, pointwise: Route(sources),
    "dropout": lambda s, cin, sources, pointwise: nn.Dropout(s.probability),
    "avgpool": lambda s, cin, sources, pointwise: GlobalAvgPool(),
    "softmax": lambda s, cin, sources, pointwise: DarknetSoftmax(s.groups, s.temperature),
    "cost": lambda s, cin, sources, pointwise: nn.Identity(),
}


def build_layer(spec: ModelSpec, index: int, cin: int, pointwise: str) -> nn.Module:
    """The torch module of ``spec.layers[index]`` with ``cin`` input channels."""
    layer = spec.layers[index]
    sources = spec.route_sources(index) if isinstance(layer, RouteSpec) else []
    return MODULES[layer.type](layer, cin, sources, pointwise)


class YOLOv2(nn.Module):
    def __init__(self, spec: ModelSpec, pointwise: str = "gemm"):
        super().__init__()
        self.spec = spec
        shapes = spec.shapes()
        self.layers = nn.ModuleList()
        for i in range(len(spec.layers)):
            cin = shapes[i - 1][0] if i else spec.channels
            self.layers.append(build_layer(spec, i, cin, pointwise))
        # Outputs that a later route reads are kept; all others are dropped as we go.
        self.keep = sorted({j for m in self.layers if isinstance(m, Route) for j in m.sources})

    def forward(self, x):
        outputs = {}
        for i, m in enumerate(self.layers):
            x = m(outputs) if isinstance(m, Route) else m(x)
            if i in self.keep:
                outputs[i] = x
        return x

    def set_pointwise(self, impl: str) -> "YOLOv2":
        for m in self.modules():
            if isinstance(m, FastDSC):
                m.set_pointwise(impl)
        return self


def build_model(spec: Union[str, ModelSpec], classes: Optional[int] = None,
                pointwise: str = "gemm", seed: Optional[int] = None) -> YOLOv2:
    """A YOLOv2 for a zoo name, spec YAML path or ModelSpec. ``seed`` makes the random
    initialisation reproducible without touching the global RNG."""
    if isinstance(spec, str):
        spec = load_spec(spec)
    if classes is not None and classes != spec.classes:
        spec = with_classes(spec, classes)
    if seed is None:
        return YOLOv2(spec, pointwise)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return YOLOv2(spec, pointwise)


def load_state(model: YOLOv2, state: dict) -> YOLOv2:
    """Load a numpy or torch state dict (checkpoint naming) into ``model``, strictly."""
    tensors = {k: torch.as_tensor(v) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"state does not fit the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model


def state_numpy(model: nn.Module) -> dict:
    """The model's parameters and BN statistics as float32 numpy arrays (checkpoint naming)."""
    return {k: v.detach().cpu().float().numpy().copy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}
