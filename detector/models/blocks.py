"""Building blocks of the torch model, one per darknet layer type.

Parameter names are stable (they are the keys of checkpoints and of the darknet mapping):
``ConvBNAct``: ``conv.weight``, ``conv.bias`` (no BN only), ``bn.*``;
``FastDSC``: ``dw.weight``, ``mid_bn.*``, ``pw.weight``, ``bn.*`` (+ ``dw.bias``/``pw.bias``
where no BN follows). The implementation of the pointwise step (one GEMM, or a 1x1 conv) is
chosen when the block is built, not in ``forward``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spec import BN_EPS, LEAKY_SLOPE, has_bias

# Darknet keeps rolling statistics with .99 * rolling + .01 * batch; that forgets the huge
# activations of the first steps too slowly for short runs (eval-mode mAP stays near 0 after
# hundreds of steps while train mode is perfect), so we use .97, as YOLOv5 does.
BN_MOMENTUM = 0.03


def activation(name: str) -> nn.Module:
    if name == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    return nn.Identity()


def norm(channels: int, enabled: bool) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM) if enabled else nn.Identity()


class ConvBNAct(nn.Module):
    """Regular (or grouped) KxK convolution -> BN -> activation (darknet [convolutional])."""

    def __init__(self, cin, cout, size=3, stride=1, padding=None, groups=1, bn=True, act="leaky"):
        super().__init__()
        padding = size // 2 if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, size, stride, padding, groups=groups, bias=not bn)
        self.bn = norm(cout, bn)
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def pointwise_gemm(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """FastDSC's pointwise step as one GEMM: Y[N, Cout, HW] = W[Cout, Cin] @ X[N, Cin, HW]."""
    n, c, h, w = x.shape
    y = torch.matmul(conv.weight.view(conv.out_channels, c), x.reshape(n, c, h * w))
    if conv.bias is not None:
        y = y + conv.bias.view(1, -1, 1)
    return y.view(n, conv.out_channels, h, w)


def pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return conv(x)


POINTWISE = {"gemm": pointwise_gemm, "conv": pointwise_conv}


class FastDSC(nn.Module):
    """Depthwise-separable replacement of a KxK convolution.

    ``dw_pw``: dw KxK (groups=Cin, Cin*T outputs) -> mid BN -> mid act -> pw GEMM -> BN -> act;
    with per-channel ``terms``, the input is first gathered (channel c ``terms[c]`` times) and
    the dw conv has one kernel per gathered channel (``dw.weight`` keeps its shape [M, 1, K, K]).
    ``pw_dw``: pw GEMM (Cout*T outputs) -> mid BN -> mid act -> grouped KxK (groups=Cout, T
    inputs each) -> BN -> act.
    """

    def __init__(self, cin, cout, size=3, stride=1, multiplier=1, order="dw_pw", mid_bn=True,
                 mid_act="leaky", bn=True, act="leaky", pointwise="gemm", terms=None):
        super().__init__()
        t, pad = multiplier, size // 2
        mid_bias = has_bias(mid_bn, mid_act)
        self.register_buffer("gather", None, persistent=False)
        if order == "dw_pw" and terms is not None:
            # per-channel terms: gather each input channel once per term, one kernel each
            index = torch.repeat_interleave(torch.arange(cin), torch.as_tensor(terms))
            self.gather = index
            mid = int(index.numel())
            self.dw = nn.Conv2d(mid, mid, size, stride, pad, groups=mid, bias=mid_bias)
            self.mid_bn = norm(mid, mid_bn)
            self.pw = nn.Conv2d(mid, cout, 1, bias=not bn)
        elif order == "dw_pw":
            self.dw = nn.Conv2d(cin, cin * t, size, stride, pad, groups=cin, bias=mid_bias)
            self.mid_bn = norm(cin * t, mid_bn)
            self.pw = nn.Conv2d(cin * t, cout, 1, bias=not bn)
        elif order == "pw_dw":
            self.pw = nn.Conv2d(cin, cout * t, 1, bias=mid_bias)
            self.mid_bn = norm(cout * t, mid_bn)
            self.dw = nn.Conv2d(cout * t, cout, size, stride, pad, groups=cout, bias=not bn)
        else:
            raise ValueError(f"unknown FastDSC order {order!r}")
        self.mid_act = activation(mid_act)
        self.bn = norm(cout, bn)
        self.act = activation(act)
        self.order = order
        self.set_pointwise(pointwise)

    def set_pointwise(self, impl: str) -> None:
        """Choose how the pointwise step runs: ``gemm`` (FastDSC's formulation) or ``conv``."""
        self.pointwise_impl = impl
        self._pointwise = POINTWISE[impl]
        gathered = "_gather" if self.gather is not None else ""
        self._forward = getattr(self, "_forward_" + self.order + gathered)

    def _forward_dw_pw(self, x):
        x = self.mid_act(self.mid_bn(self.dw(x)))
        return self.act(self.bn(self._pointwise(self.pw, x)))

    def _forward_dw_pw_gather(self, x):
        return self._forward_dw_pw(x.index_select(1, self.gather))

    def _forward_pw_dw(self, x):
        x = self.mid_act(self.mid_bn(self._pointwise(self.pw, x)))
        return self.act(self.bn(self.dw(x)))

    def forward(self, x):
        return self._forward(x)


class MaxPoolDarknet(nn.Module):
    """Darknet maxpool: pads ``padding // 2`` before and the rest after (so size 2 stride 1
    keeps the size and looks right/down), out = (in + padding - size) // stride + 1."""

    def __init__(self, size=2, stride=2, padding=None):
        super().__init__()
        pad = size - 1 if padding is None else padding
        self.size, self.stride = size, stride
        self.pads = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)

    def forward(self, x):
        if any(self.pads) and not self._pad_unread(x.shape[-2], x.shape[-1]):
            x = F.pad(x, self.pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def _pad_unread(self, h: int, w: int) -> bool:
        """True when no window reads the padding (padding only after, and the output size is
        the same without it: size 2 stride 2 on even sizes), so the copy can be skipped."""
        top, bottom, left, right = self.pads[2], self.pads[3], self.pads[0], self.pads[1]
        k, s = self.size, self.stride
        return top == 0 and left == 0 and h >= k and w >= k and \
            (h + bottom - k) // s == (h - k) // s and (w + right - k) // s == (w - k) // s


class Reorg(nn.Module):
    """Darknet's reorg layer, bit-exact with its memory layout.

    Darknet reads its C x H x W input as (C/s^2) x (H*s) x (W*s) and gathers
    ``out[(dy*s + dx)*C/s^2 + c, y, x] = in'[c, y*s + dy, x*s + dx]`` into a C x H x W buffer,
    which the next layer reads as (C*s^2) x (H/s) x (W/s). This is not space-to-depth.
    """

    def __init__(self, stride=2):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.stride
        x = x.reshape(n, c // (s * s), h, s, w, s)          # [c2, y, dy, x, dx]
        x = x.permute(0, 3, 5, 1, 2, 4).reshape(n, c, h, w)  # [dy, dx, c2, y, x]
        return x.reshape(n, c * s * s, h // s, w // s)


class Route(nn.Module):
    """Darknet [route]: concatenation of earlier layers' outputs (absolute indices)."""

    def __init__(self, sources):
        super().__init__()
        self.sources = list(sources)

    def forward(self, outputs):
        if len(self.sources) == 1:
            return outputs[self.sources[0]]
        return torch.cat([outputs[j] for j in self.sources], 1)


class GlobalAvgPool(nn.Module):
    """Darknet's avgpool: each channel's mean over the whole image -> (N, C, 1, 1)."""

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=True)


class DarknetSoftmax(nn.Module):
    """Darknet's softmax layer: each sample's C*H*W values in ``groups`` equal parts, a
    softmax over each part of ``x / temperature``; the shape is kept."""

    def __init__(self, groups: int = 1, temperature: float = 1.0):
        super().__init__()
        self.groups, self.temperature = groups, temperature

    def forward(self, x):
        flat = x.reshape(x.shape[0], self.groups, -1) / self.temperature
        return torch.softmax(flat, dim=2).reshape(x.shape)
