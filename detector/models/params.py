"""Parameter names and shapes of a spec without torch, in darknet's file order.

The torch model (``yolov2.py``), the darknet weights reader/writer, checkpoints and the
lowered inference plan all use these names; tests check they match the torch state dict.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .spec import Conv, FastDSC, ModelSpec, has_bias


class ConvParams(NamedTuple):
    """One darknet [convolutional] layer: where its parameters live in the state dict."""
    prefix: str          # e.g. "layers.5.dw" -> "layers.5.dw.weight"
    bn: Optional[str]    # BN prefix ("layers.5.mid_bn") or None (then the conv has a bias)
    cin: int
    cout: int
    size: int
    stride: int
    padding: int
    groups: int
    act: str
    layer: int           # spec layer index
    has_bias: bool       # conv bias present (False for a linear middle with no BN)

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return (self.cout, self.cin // self.groups, self.size, self.size)


def conv_params(spec: ModelSpec) -> List[ConvParams]:
    """Every convolution of the network in darknet's order (a FastDSC block is two)."""
    out: List[ConvParams] = []
    shapes = spec.shapes()
    for i, layer in enumerate(spec.layers):
        cin = shapes[i - 1][0] if i else spec.channels
        p = f"layers.{i}"
        if isinstance(layer, Conv):
            out.append(ConvParams(f"{p}.conv", f"{p}.bn" if layer.bn else None, cin,
                                  layer.filters, layer.size, layer.stride, layer.padding,
                                  layer.groups, layer.act, i, not layer.bn))
        elif isinstance(layer, FastDSC):
            t, k, s, pad = layer.multiplier, layer.size, layer.stride, layer.padding
            mid_bn = f"{p}.mid_bn" if layer.mid_bn else None
            mid_bias = has_bias(layer.mid_bn, layer.mid_act)
            last_bn = f"{p}.bn" if layer.bn else None
            if layer.order == "dw_pw":
                mid = layer.mid_channels(cin)
                # per-channel terms: the depthwise conv reads the gathered input (one channel
                # per middle channel), so its groups are the middle channels
                dw_in = cin if layer.terms is None else mid
                out.append(ConvParams(f"{p}.dw", mid_bn, dw_in, mid, k, s, pad, dw_in,
                                      layer.mid_act, i, mid_bias))
                out.append(ConvParams(f"{p}.pw", last_bn, mid, layer.filters, 1, 1, 0, 1,
                                      layer.act, i, not layer.bn))
            else:
                out.append(ConvParams(f"{p}.pw", mid_bn, cin, layer.filters * t, 1, 1, 0, 1,
                                      layer.mid_act, i, mid_bias))
                out.append(ConvParams(f"{p}.dw", last_bn, layer.filters * t, layer.filters, k,
                                      s, pad, layer.filters, layer.act, i, not layer.bn))
    return out


BN_PARTS = ("bias", "weight", "running_mean", "running_var")   # darknet order: biases, scales, mean, var


def param_shapes(spec: ModelSpec) -> "OrderedDict[str, Tuple[int, ...]]":
    """Name -> shape of every checkpoint tensor, in darknet's weight file order."""
    shapes: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()
    for c in conv_params(spec):
        if c.bn:
            for part in BN_PARTS:
                shapes[f"{c.bn}.{part}"] = (c.cout,)
        elif c.has_bias:
            shapes[f"{c.prefix}.bias"] = (c.cout,)
        shapes[f"{c.prefix}.weight"] = c.weight_shape
    return shapes


def init_params(spec: ModelSpec, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random weights as darknet initialises them (uniform, scale sqrt(2/fan_in)); BN at
    identity. Deterministic for a seed, and needs no torch (used for zoo names)."""
    rng = np.random.default_rng(seed)
    state: Dict[str, np.ndarray] = {}
    for name, shape in param_shapes(spec).items():
        if name.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            scale = np.sqrt(2.0 / fan_in)
            state[name] = (scale * rng.uniform(-1, 1, size=shape)).astype(np.float32)
        elif name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
            state[name] = np.ones(shape, np.float32)
        else:
            state[name] = np.zeros(shape, np.float32)
    return state


def check_state(spec: ModelSpec, state: Dict[str, np.ndarray], source: str) -> None:
    """Raise ValueError naming the first tensor that is missing or has the wrong shape."""
    want = param_shapes(spec)
    for name, shape in want.items():
        if name not in state:
            raise ValueError(f"{source}: tensor {name} missing (model {spec.name})")
        if tuple(state[name].shape) != tuple(shape):
            raise ValueError(f"{source}: tensor {name} has shape {tuple(state[name].shape)}, "
                             f"model {spec.name} expects {tuple(shape)}")
    extra = [k for k in state if k not in want]
    if extra:
        raise ValueError(f"{source}: {len(extra)} tensors the model {spec.name} does not have, "
                         f"e.g. {extra[0]}")
