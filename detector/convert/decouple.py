"""Network Decoupling (Guo et al., arXiv 1808.05517): a regular KxK convolution as a sum of
T depthwise-separable terms, from the SVD of its weight slices, without data or training.

For ``W`` of shape (Cout, Cin, K, K):

- ``dw_pw`` (input-channel slices): for each input channel c, ``W[:, c]`` reshaped to
  Cout x K*K is ``sum_t u_t s_t v_t^T``. Term t of channel c is the depthwise kernel ``v_t``
  (output channel ``c*T + t`` of a depthwise conv with channel multiplier T) and the pointwise
  column ``u_t * s_t`` (column ``c*T + t`` of the Cout x Cin*T pointwise GEMM).
- ``pw_dw`` (output-channel slices): for each output channel o, ``W[o]`` reshaped to
  Cin x K*K is ``sum_t u_t s_t v_t^T``. Term t is the pointwise row ``u_t * s_t`` (row
  ``o*T + t`` of a Cin -> Cout*T GEMM) and the KxK kernel ``v_t`` of the grouped conv that sums
  the T channels of group o.

T = K*K is exact in both orders. Singular values are taken of the slices scaled by the layer's
BN scale ``|gamma| / sqrt(var + eps)`` per output channel (``bn_weighted``), so truncation
minimises the error after BN, where the next layer sees it; the scale is divided out of the
pointwise weights again, so nothing is folded and the original BN stays after the block.

Energy of T terms for one order (aggregated over all slices of the layer)::

    E(T) = sum_slices sum_{t<T} s_t^2 / sum_slices sum_t s_t^2 = 1 - |D (W - W_T)|^2 / |D W|^2

i.e. one minus the squared relative (BN-weighted) Frobenius error of the truncated weight, so
``E`` is comparable between the two orders and ``weight_err = sqrt(1 - E)``.

Allocation (``dw_pw``): by default (``allocate="channel"``) the layer's budget of M middle
channels (``Cin * T`` for ``terms=T``; for ``energy=E`` the smallest M reaching E) goes to
the M largest singular values over ALL its slices, so input channel c keeps its ``counts[c]``
leading terms (0 to K*K): a learned layer's input channels differ a lot in how many terms they
need, and the same FLOPs then keep more energy. The block is then a FastDSC with per-channel
``terms`` (a channel gather before the depthwise conv). ``allocate="layer"`` gives every input
channel the same T (the plain channel multiplier). ``pw_dw`` layers always use a uniform T.

This module needs numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ParamError, UserError
from ..models.params import param_shapes
from ..models.spec import BN_EPS, Conv, FastDSC, ModelSpec

ORDERS = ("dw_pw", "pw_dw")
ALLOCATIONS = ("channel", "layer")
DEFAULT_ENERGY = 0.95


@dataclass
class Factors:
    """Per-slice factorisation ``A_s = (A_s V_s) V_s^T`` with singular values descending.

    ``a``: (S, R, Q) the slices; ``v``: (S, Q, Q) right singular vectors (columns); ``sq``:
    (S, Q) squared singular values. Q = K*K, R = rows of one slice.
    """
    a: np.ndarray
    v: np.ndarray
    sq: np.ndarray

    def us(self, terms: int) -> np.ndarray:
        """(S, R, terms): left singular vectors times singular values, ``A V``."""
        return np.matmul(self.a, self.v[:, :, :terms])


def slice_factors(a: np.ndarray) -> Factors:
    """SVD of a stack of (R x Q) slices with Q small (K*K), through the Q x Q Gram matrices.

    ``A^T A = V S^2 V^T``, ``U S = A V``. ``V`` is orthogonal to machine precision whatever the
    conditioning, so keeping all Q terms reproduces ``A`` exactly.
    """
    a = np.ascontiguousarray(a, np.float64)
    gram = np.matmul(a.transpose(0, 2, 1), a)
    sq, v = np.linalg.eigh(gram)                      # ascending
    sq, v = sq[:, ::-1], v[:, :, ::-1]
    sq = np.clip(sq, 0.0, None)
    return Factors(a, np.ascontiguousarray(v), np.ascontiguousarray(sq))


def bn_scale(state: Dict[str, np.ndarray], prefix: str, cout: int) -> np.ndarray:
    """|gamma| / sqrt(var + eps) of the BN at ``prefix`` (ones without BN), floored at 1e-6
    of its largest value so dead channels never divide by zero."""
    if prefix + ".running_var" not in state:
        return np.ones(cout)
    s = np.abs(state[prefix + ".weight"].astype(np.float64)) / \
        np.sqrt(state[prefix + ".running_var"].astype(np.float64) + BN_EPS)
    top = float(s.max()) if s.size else 1.0
    return np.maximum(s, max(top, 1e-30) * 1e-6)


def slices(weight: np.ndarray, order: str, scale: np.ndarray) -> np.ndarray:
    """The BN-weighted slices of a (Cout, Cin, K, K) weight for ``order``."""
    w = np.asarray(weight, np.float64)
    cout, cin, k, _ = w.shape
    w = w * scale[:, None, None, None]
    if order == "dw_pw":                               # (Cin, Cout, K*K)
        return w.reshape(cout, cin, k * k).transpose(1, 0, 2)
    return w.reshape(cout, cin, k * k)                 # (Cout, Cin, K*K)


def energy_curve(sq: np.ndarray) -> np.ndarray:
    """E(T) for T = 1..Q from squared singular values (S, Q)."""
    per_t = sq.sum(axis=0)
    total = per_t.sum()
    if total <= 0:
        return np.ones(sq.shape[1])
    return np.minimum(np.cumsum(per_t) / total, 1.0)


def channel_counts(sq: np.ndarray, mid: int) -> np.ndarray:
    """Terms per slice (S,) keeping the ``mid`` largest squared singular values of ``sq``
    (S, Q) over all slices. Each row is descending, so every slice keeps a prefix of its
    terms; ties go to the earlier slice and term."""
    s, q = sq.shape
    mid = int(min(max(mid, 1), s * q))
    top = np.argsort(-sq.ravel(), kind="stable")[:mid]
    return np.bincount(top // q, minlength=s).astype(np.int64)


def mid_for_energy(sq: np.ndarray, energy: float) -> int:
    """The smallest number of terms over all slices (largest first) keeping ``energy``."""
    flat = np.sort(sq.ravel())[::-1]
    total = flat.sum()
    if total <= 0:
        return 1
    curve = np.cumsum(flat) / total
    return int(min(np.searchsorted(curve, energy - 1e-12) + 1, flat.size))


def counts_energy(sq: np.ndarray, counts: np.ndarray) -> float:
    """Energy kept by ``counts[c]`` leading terms of every slice c."""
    total = sq.sum()
    if total <= 0:
        return 1.0
    keep = np.arange(sq.shape[1])[None, :] < counts[:, None]
    return float(min(sq[keep].sum() / total, 1.0))


def gather_index(counts: np.ndarray) -> np.ndarray:
    """The input channel of every middle channel: c repeated ``counts[c]`` times."""
    return np.repeat(np.arange(len(counts)), counts)


def term_index(counts: np.ndarray) -> np.ndarray:
    """The term (0..counts[c]-1) of every middle channel, channel-major."""
    return np.concatenate([np.arange(int(t)) for t in counts]) if len(counts) else \
        np.zeros(0, np.int64)


def terms_for_energy(curve: np.ndarray, energy: float) -> int:
    """The smallest T whose energy reaches ``energy`` (1e-12 slack for rounding)."""
    return int(min(np.searchsorted(curve, energy - 1e-12) + 1, len(curve)))


def block_weights(f: Factors, order: str, terms: int, scale: np.ndarray,
                  size: int, counts: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(dw.weight, pw.weight) in the FastDSC block's layout from the first ``terms`` terms
    (``counts[c]`` terms of input channel c when given, ``dw_pw`` only).

    The BN scale is divided back out of the pointwise weights; ``v`` columns are the kernels.
    """
    t, k = terms, size
    if counts is not None:
        src, tix = gather_index(counts), term_index(counts)
        dw = f.v[src, :, tix].reshape(len(src), 1, k, k)                 # (M, 1, K, K)
        us = f.us(f.v.shape[2])[src, :, tix]                             # (M, Cout)
        pw = (us / scale[None, :]).T.reshape(us.shape[1], len(src), 1, 1)
        return dw.astype(np.float32), pw.astype(np.float32)
    us, v = f.us(t), f.v[:, :, :t]
    if order == "dw_pw":
        cin, cout = us.shape[0], us.shape[1]
        dw = v.transpose(0, 2, 1).reshape(cin * t, 1, k, k)
        pw = (us / scale[None, :, None]).transpose(1, 0, 2).reshape(cout, cin * t, 1, 1)
    else:
        cout, cin = us.shape[0], us.shape[1]
        pw = (us / scale[:, None, None]).transpose(0, 2, 1).reshape(cout * t, cin, 1, 1)
        dw = v.transpose(0, 2, 1).reshape(cout, t, k, k)
    return dw.astype(np.float32), pw.astype(np.float32)


# ---- cost model --------------------------------------------------------------------------

def conv_flops(cin: int, cout: int, k: int, out_hw: Tuple[int, int], groups: int = 1) -> int:
    """2 x multiply-adds, as ``engine.plan.Plan.flops`` counts them."""
    return 2 * cout * out_hw[0] * out_hw[1] * (cin // groups) * k * k


def block_flops(order: str, cin: int, cout: int, k: int, terms: int,
                in_hw: Tuple[int, int], out_hw: Tuple[int, int], mid: Optional[int] = None) -> int:
    """``mid``: middle channels of a ``dw_pw`` block with per-channel terms (else Cin*T)."""
    t = terms
    if order == "dw_pw":
        m = cin * t if mid is None else mid
        return conv_flops(m, m, k, out_hw, m) + conv_flops(m, cout, 1, out_hw)
    return conv_flops(cin, cout * t, 1, in_hw) + conv_flops(cout * t, cout, k, out_hw, cout)


def block_weight_params(order: str, cin: int, cout: int, k: int, terms: int) -> int:
    return cin * terms * k * k + cin * terms * cout if order == "dw_pw" else \
        cout * terms * cin + cout * terms * k * k


# ---- per-layer planning ------------------------------------------------------------------

@dataclass
class LayerPlan:
    """What happens to one spec layer: ``action`` is ``convert`` or ``keep`` (with ``reason``)."""
    index: int
    kind: str                       # conv | fastdsc
    cin: int
    cout: int
    size: int
    stride: int
    in_hw: Tuple[int, int]
    out_hw: Tuple[int, int]
    action: str = "keep"
    reason: str = ""
    order: Optional[str] = None
    terms: Optional[float] = None   # T; with per-channel counts, their mean (mid / cin)
    mid: Optional[int] = None       # middle channels (Cin*T or Cout*T, or sum(counts))
    counts: Optional[List[int]] = None   # terms per input channel (channel allocation)
    energy: Optional[float] = None
    weight_err: Optional[float] = None
    flops_before: int = 0
    flops_after: int = 0
    candidates: Dict[str, dict] = field(default_factory=dict)   # order -> terms/energy/flops

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class LayerWeights:
    """The converted weights of one layer (numpy, block layout) plus the fitted output shift
    (the intercept of the data fit, folded into BN's running mean or the bias at the end)."""
    order: str
    terms: int
    size: int
    stride: int
    pad: int
    dw: np.ndarray
    pw: np.ndarray
    bias: Optional[np.ndarray]      # final bias when the original conv has no BN
    shift: Optional[np.ndarray] = None
    counts: Optional[np.ndarray] = None   # dw_pw: terms per input channel (None: uniform)


def check_options(terms, energy: Optional[float], order: str, allocate: str = "channel") -> None:
    """``terms``: None, an int, or a list of ints (one per converted layer)."""
    if terms is not None and energy is not None:
        raise ParamError("terms", f"exclusive with energy: give one (default: energy="
                                  f"{DEFAULT_ENERGY})")
    values = [] if terms is None else list(terms) if isinstance(terms, (list, tuple)) \
        else [terms]
    for t in values:
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= 225:
            raise ParamError("terms", "must be an integer from 1 to K*K (9 for 3x3 convs; K*K "
                                      "is exact)", value=t)
    if energy is not None and not (isinstance(energy, (int, float)) and 0.0 < energy <= 1.0):
        raise ParamError("energy", "must be in (0, 1]", value=energy)
    if order not in ("auto",) + ORDERS:
        raise ParamError("order", "allowed values: auto, " + ", ".join(ORDERS), value=order)
    if allocate not in ALLOCATIONS:
        raise ParamError("allocate", "allowed values: " + ", ".join(ALLOCATIONS),
                         value=allocate)


def plan_layers(spec: ModelSpec, state: Dict[str, np.ndarray], terms: Optional[int] = None,
                energy: Optional[float] = None, order: str = "auto", size: Optional[int] = None,
                bn_weighted: bool = True, keep_first: bool = True, allocate: str = "channel"
                ) -> Tuple[List[LayerPlan], Dict[int, Factors]]:
    """Decide T (and with ``allocate="channel"`` the terms of every input channel of a
    ``dw_pw`` layer) and the order of every convertible layer (the factorisations are returned
    so ``decouple`` does not repeat them). FLOPs are for a ``size`` x ``size`` input."""
    check_options(terms, energy, order, allocate)
    if terms is None and energy is None:
        energy = DEFAULT_ENERGY
    size = size or spec.size
    shapes = spec.shapes(size)
    first_conv = next((i for i, layer in enumerate(spec.layers)
                       if isinstance(layer, (Conv, FastDSC))), None)
    per_layer = layer_terms(spec, terms, first_conv, keep_first) \
        if isinstance(terms, (list, tuple)) else None
    plans: List[LayerPlan] = []
    factors: Dict[int, Factors] = {}
    for i, layer in enumerate(spec.layers):
        if not isinstance(layer, (Conv, FastDSC)):
            continue
        cin, hin, win = shapes[i - 1] if i else (spec.channels, size, size)
        cout, hout, wout = shapes[i]
        p = LayerPlan(i, layer.type, cin, cout, layer.size, layer.stride, (hin, win),
                      (hout, wout))
        plans.append(p)
        if isinstance(layer, FastDSC):
            _keep_block(p, layer)
            continue
        p.flops_before = p.flops_after = conv_flops(cin, cout, layer.size, p.out_hw,
                                                    layer.groups)
        p.reason = keep_reason(i, layer, first_conv, keep_first)
        if p.reason:
            continue
        scale = bn_scale(state, f"layers.{i}.bn", cout) if bn_weighted else np.ones(cout)
        layer_t = terms if per_layer is None else per_layer[i]
        factors[i] = _plan_conversion(p, state[f"layers.{i}.conv.weight"], scale, layer_t,
                                      energy, order, allocate)
    if not any(p.action == "convert" for p in plans):
        raise UserError(f"model {spec.name}: no convertible layer (regular KxK convs with K > 1, "
                        "other than the first conv)")
    return plans, factors


def layer_terms(spec: ModelSpec, terms: List[int], first_conv: Optional[int],
                keep_first: bool) -> Dict[int, int]:
    """Layer index -> T of a ``terms`` list that gives one T per convertible layer."""
    todo = [i for i, layer in enumerate(spec.layers) if isinstance(layer, Conv)
            and not keep_reason(i, layer, first_conv, keep_first)]
    if len(terms) != len(todo):
        raise ParamError("terms", f"lists {len(terms)} values; model {spec.name} has "
                                  f"{len(todo)} convertible layers ({', '.join(map(str, todo))})")
    return dict(zip(todo, terms))


def _keep_block(p: LayerPlan, layer: FastDSC) -> None:
    """Plan an existing FastDSC block: kept, at its own FLOPs."""
    p.reason = "already a FastDSC block"
    mid = layer.mid_channels(p.cin) if layer.order == "dw_pw" else None
    p.flops_before = p.flops_after = block_flops(layer.order, p.cin, p.cout, layer.size,
                                                 layer.multiplier, p.in_hw, p.out_hw, mid)


def _plan_conversion(p: LayerPlan, w: np.ndarray, scale: np.ndarray, terms: Optional[int],
                     energy: Optional[float], order: str, allocate: str) -> Factors:
    """Fill in ``p`` for converting its conv weight ``w``: each order's candidate
    (``_candidate``), then the one with fewer FLOPs; returns that order's factorisation."""
    best = None
    per_channel: Dict[str, List[int]] = {}      # order -> counts (channel allocation)
    for o in (ORDERS if order == "auto" else (order,)):
        f = slice_factors(slices(w, o, scale))
        p.candidates[o], counts = _candidate(p, f, o, terms, energy, allocate)
        if counts is not None:
            per_channel[o] = counts
        # ties go to dw_pw (FastDSC's order, and the one DD can refit most freely)
        key = (p.candidates[o]["flops"], ORDERS.index(o))
        if best is None or key < best[0]:
            best = (key, o, f)
    _, o, f = best
    c = p.candidates[o]
    p.action, p.order, p.terms, p.energy = "convert", o, c["terms"], c["energy"]
    p.mid, p.counts = c["mid"], per_channel.get(o)
    p.weight_err = float(np.sqrt(max(0.0, 1.0 - c["energy"])))
    p.flops_after = c["flops"]
    return f


def _candidate(p: LayerPlan, f: Factors, o: str, terms: Optional[int], energy: Optional[float],
               allocate: str) -> Tuple[dict, Optional[List[int]]]:
    """(T, middle channels, energy and FLOPs of converting ``p`` in order ``o``; the terms of
    every input channel with channel allocation, else None). ``terms`` fixes T, else the
    ``energy`` rule picks it."""
    k2 = p.size ** 2
    curve = energy_curve(f.sq)
    t = min(terms, k2) if terms is not None else terms_for_energy(curve, energy)
    if o == "dw_pw" and allocate == "channel":
        mid = p.cin * t if energy is None or terms is not None else mid_for_energy(f.sq, energy)
        counts = channel_counts(f.sq, mid)
        fl = block_flops(o, p.cin, p.cout, p.size, t, p.in_hw, p.out_hw, mid)
        return ({"terms": round(mid / p.cin, 4), "mid": int(mid),
                 "energy": counts_energy(f.sq, counts), "flops": fl}, counts.tolist())
    fl = block_flops(o, p.cin, p.cout, p.size, t, p.in_hw, p.out_hw)
    return ({"terms": t, "mid": (p.cin if o == "dw_pw" else p.cout) * t,
             "energy": float(curve[t - 1]), "flops": fl}, None)


def keep_reason(i: int, layer: Conv, first_conv: Optional[int], keep_first: bool) -> str:
    """Why ``plan_layers`` keeps regular conv i as it is ("" when it converts it)."""
    if i == first_conv and keep_first:
        return "first conv (reads the image)"
    if layer.size == 1:
        return "1x1 conv"
    if layer.groups != 1:
        return f"grouped conv (groups={layer.groups})"
    if layer.padding != layer.size // 2:
        return f"padding {layer.padding} != size//2"
    return ""


def decouple(spec: ModelSpec, state: Dict[str, np.ndarray], plans: List[LayerPlan],
             factors: Dict[int, Factors], bn_weighted: bool = True) -> Dict[int, LayerWeights]:
    """The ND weights of every layer planned for conversion."""
    out: Dict[int, LayerWeights] = {}
    for p in plans:
        if p.action != "convert":
            continue
        layer = spec.layers[p.index]
        scale = bn_scale(state, f"layers.{p.index}.bn", p.cout) if bn_weighted \
            else np.ones(p.cout)
        counts = None if p.counts is None else np.asarray(p.counts, np.int64)
        terms = int(p.terms) if counts is None else int(counts.max())
        dw, pw = block_weights(factors[p.index], p.order, terms, scale, layer.size, counts)
        bias = state.get(f"layers.{p.index}.conv.bias")
        out[p.index] = LayerWeights(p.order, terms, layer.size, layer.stride, layer.padding,
                                    dw, pw, None if bias is None else bias.copy(),
                                    counts=counts)
    return out


def converted_spec(spec: ModelSpec, plans: List[LayerPlan], name: Optional[str] = None
                   ) -> ModelSpec:
    """The spec with every converted conv replaced by a decoupled FastDSC block (linear middle,
    no middle BN, the conv's BN and activation after the block; per-channel terms from
    ``LayerPlan.counts``)."""
    layers = list(spec.layers)
    for p in plans:
        if p.action == "convert":
            c = spec.layers[p.index]
            counts = p.counts
            terms = int(round(p.terms)) if counts is None else counts[0]
            if counts is not None and len(set(counts)) == 1:
                counts = None                  # equal counts: the plain channel multiplier
            layers[p.index] = FastDSC(filters=c.filters, size=c.size, stride=c.stride,
                                      multiplier=terms if counts is None else 1,
                                      order=p.order, mid_bn=False, mid_act="linear", bn=c.bn,
                                      act=c.act, terms=counts)
    return spec.replace(layers=layers, name=name or spec.name)


def balanced(lw: LayerWeights) -> Tuple[np.ndarray, np.ndarray]:
    """(dw, pw) with every middle channel's scale shared evenly between its two factors.

    The middle of a converted block is linear, so multiplying a middle channel's first factor
    by ``c`` and dividing its second by ``c`` computes the same function. DD's data-aware
    factors come out badly split (depthwise kernels around 1e-2 in RMS, pointwise weights
    around 10), and a model like that does not fine-tune: every optimizer step is far too
    large for one factor and far too small for the other (AdamW, lr 3e-4, lost 13 mAP points
    in the first epoch). ``c`` is chosen so both factors of a channel get the same RMS."""
    dw, pw = lw.dw.astype(np.float64), lw.pw.astype(np.float64)
    if lw.order == "dw_pw":      # dw [Cin*T, 1, K, K] -> middle j -> pw [Cout, Cin*T, 1, 1]
        first = dw.reshape(dw.shape[0], -1)
        second = pw.reshape(pw.shape[0], pw.shape[1]).T          # [Cin*T, Cout]
    else:                        # pw [Cout*T, Cin, 1, 1] -> middle j = o*T + t -> dw [Cout, T, K, K]
        first = pw.reshape(pw.shape[0], -1)
        second = dw.reshape(dw.shape[0] * dw.shape[1], -1)       # [Cout*T, K*K]
    rms1 = np.sqrt(np.mean(first ** 2, axis=1))
    rms2 = np.sqrt(np.mean(second ** 2, axis=1))
    ok = (rms1 > 0) & (rms2 > 0)
    c = np.ones_like(rms1)
    c[ok] = np.sqrt(rms2[ok] / rms1[ok])
    first, second = first * c[:, None], second / c[:, None]
    if lw.order == "dw_pw":
        return (first.reshape(dw.shape).astype(np.float32),
                second.T.reshape(pw.shape).astype(np.float32))
    return second.reshape(dw.shape).astype(np.float32), first.reshape(pw.shape).astype(np.float32)


def converted_state(spec: ModelSpec, state: Dict[str, np.ndarray], new_spec: ModelSpec,
                    weights: Dict[int, LayerWeights]) -> Dict[str, np.ndarray]:
    """The state dict of ``new_spec``: untouched tensors copied, converted layers' conv weights
    replaced by dw/pw (scales balanced between the two, :func:`balanced`), the fitted shift
    folded into BN's running mean (or the final bias)."""
    new: Dict[str, np.ndarray] = {}
    for k, v in state.items():
        layer = int(k.split(".")[1]) if k.startswith("layers.") else -1
        if layer in weights and ".conv." in k:
            continue
        new[k] = v
    for i, lw in weights.items():
        p = f"layers.{i}"
        new[f"{p}.dw.weight"], new[f"{p}.pw.weight"] = balanced(lw)
        last = f"{p}.pw" if lw.order == "dw_pw" else f"{p}.dw"
        shift = lw.shift if lw.shift is not None else 0.0
        if lw.bias is not None:
            new[f"{last}.bias"] = (lw.bias.astype(np.float64) + shift).astype(np.float32)
        elif lw.shift is not None:
            mean = state[f"{p}.bn.running_mean"].astype(np.float64)
            new[f"{p}.bn.running_mean"] = (mean - lw.shift).astype(np.float32)
    want = param_shapes(new_spec)
    missing = [k for k in want if k not in new]
    if missing:
        raise ValueError(f"converted state misses {missing[:3]}")
    return {k: new[k] for k in want}


def layer_params(spec: ModelSpec, index: int) -> int:
    """All parameters of one spec layer (weights, biases, BN), from the checkpoint shapes."""
    prefix = f"layers.{index}."
    return int(sum(int(np.prod(s)) for k, s in param_shapes(spec).items()
                   if k.startswith(prefix)))
