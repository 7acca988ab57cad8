"""The inference plan: a model lowered to a flat list of ops on numbered buffers.

Lowering folds every BatchNorm into the preceding convolution, turns routes into
concatenations (or aliases), and fixes all buffer shapes for one input size, so a backend can
allocate everything once and reuse it every frame. A plan needs numpy only: it is what the
``ort`` (via ``onnx_graph``), ``cuda`` and ``emu`` backends execute, and it saves to one
safetensors file (tensors + JSON in the metadata) that loads without torch.

Ops (``plan.ops``), all on NCHW float32 buffers with batch 1:

- ``conv``: ``src``, ``dst``, ``weight`` [Cout, Cin/groups, k, k], ``bias`` [Cout], ``size``,
  ``stride``, ``pad``, ``groups``, ``act`` (leaky 0.1 / linear / relu). Kinds by shape:
  pointwise GEMM (k=1, groups=1), depthwise (groups=Cin, Cout=Cin*T) or grouped-sum
  (groups=Cout, Cin=Cout*T), regular (groups=1).
- ``maxpool``: ``size``, ``stride``, ``pad_before``, ``pad_after`` (padding ignored, darknet).
- ``reorg``: ``stride`` (darknet's layout, see models/blocks.Reorg).
- ``concat``: ``srcs`` along channels.
- ``gather``: ``channels`` (list of source channel indices): dst channel j = src channel
  ``channels[j]`` (repeats and skips allowed). A FastDSC block with per-channel terms lowers
  to gather -> depthwise (one kernel per gathered channel) -> pointwise.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import UserError
from ..models.params import check_state, conv_params
from ..models.spec import (ACTIVATIONS, BN_EPS, MAX_LAYER_VALUES, Conv, FastDSC, MaxPool,
                           ModelSpec, Reorg, Route, infer_shapes)

PLAN_VERSION = 1
PLAN_KEY = "fastdsc_plan"


@dataclass
class Plan:
    size: int
    channels: int
    buffers: List[Tuple[int, int, int]]          # (C, H, W); buffer 0 is the input
    ops: List[dict]
    output: int
    tensors: Dict[str, np.ndarray]
    anchors: List[Tuple[float, float]]
    classes: int
    names: List[str]
    spec: dict = field(default_factory=dict)     # ModelSpec.to_dict() of the source model

    def conv_kind(self, op: dict) -> str:
        """``pointwise``, ``depthwise``, ``grouped_sum``, ``grouped`` or ``regular``."""
        cin = self.buffers[op["src"]][0]
        cout = self.buffers[op["dst"]][0]
        g = op["groups"]
        if g == 1:
            return "pointwise" if op["size"] == 1 and op["stride"] == 1 and op["pad"] == 0 else "regular"
        if g == cin and cout % cin == 0:
            return "depthwise"
        if g == cout and cin % cout == 0:
            return "grouped_sum"
        return "grouped"

    def flops(self, op: dict) -> int:
        """Multiply-adds x 2 of one op (0 for data movement)."""
        if op["op"] != "conv":
            return 0
        cout, h, w = self.buffers[op["dst"]]
        cin = self.buffers[op["src"]][0]
        return 2 * cout * h * w * (cin // op["groups"]) * op["size"] ** 2

    def total_flops(self) -> int:
        return sum(self.flops(op) for op in self.ops)

    # ---- persistence ------------------------------------------------------------------
    def meta(self) -> dict:
        return {"version": PLAN_VERSION, "size": self.size, "channels": self.channels,
                "buffers": [list(b) for b in self.buffers], "ops": self.ops,
                "output": self.output, "anchors": [list(a) for a in self.anchors],
                "classes": self.classes, "names": self.names, "spec": self.spec}

    def save(self, path: str) -> None:
        from safetensors.numpy import save_file
        from ..io.atomic import atomic_path
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.tensors.items()}, tmp,
                      metadata={PLAN_KEY: json.dumps(self.meta())})


def load_plan(path: str) -> Plan:
    """Load a plan saved by ``Plan.save`` (numpy and safetensors only)."""
    from ..io.checkpoint import read_safetensors
    tensors, metadata = read_safetensors(path)
    if PLAN_KEY not in metadata:
        raise UserError(f"{path}: not a FastDSC-YOLO plan file (no '{PLAN_KEY}' metadata)")
    try:
        m = json.loads(metadata[PLAN_KEY])
        if m.get("version") != PLAN_VERSION:
            raise UserError(f"{path}: plan version {m.get('version')} is not supported "
                            f"(this build reads {PLAN_VERSION})")
        plan = Plan(size=int(m["size"]), channels=int(m["channels"]),
                    buffers=[tuple(int(v) for v in b) for b in m["buffers"]], ops=m["ops"],
                    output=int(m["output"]), tensors=tensors,
                    anchors=[(float(a[0]), float(a[1])) for a in m["anchors"]],
                    classes=int(m["classes"]), names=list(m["names"]), spec=m.get("spec", {}))
        _check_plan(plan, path)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise UserError(f"{path}: corrupt plan metadata ({type(e).__name__}: {e})") from None
    return plan


_OP_KEYS = {"conv": ("src", "dst", "size", "stride", "pad", "groups"),
            "maxpool": ("src", "dst", "size", "stride", "pad_before", "pad_after"),
            "reorg": ("src", "dst", "stride"), "concat": ("dst",), "gather": ("src", "dst")}


def _check_plan(plan: Plan, path: str) -> None:
    """A plan file is input: the backends (native code among them) allocate its buffers and
    index them with its ops, so every shape and index must be what lowering would make."""
    def bad(msg):
        return UserError(f"{path}: corrupt plan: {msg}")

    if not (isinstance(plan.size, int) and 1 <= plan.size <= 4096):
        raise bad(f"input size {plan.size!r} (allowed: 1..4096)")
    bufs = plan.buffers
    if not bufs or not isinstance(plan.channels, int) or bufs[0][0] != plan.channels:
        raise bad("buffer 0 must be the input, with the plan's channel count")
    for b in bufs:
        if len(b) != 3 or min(b) < 1 or b[0] * b[1] * b[2] > MAX_LAYER_VALUES:
            raise bad(f"buffer shape {b} (3 positive sides, at most {MAX_LAYER_VALUES:,} values)")
    if not 0 <= plan.output < len(bufs):
        raise bad(f"output buffer {plan.output} does not exist")
    for i, op in enumerate(plan.ops):
        kind = op.get("op") if isinstance(op, dict) else None
        if kind not in _OP_KEYS:
            raise bad(f"op {i}: unknown op type {kind!r}")
        for k in _OP_KEYS[kind]:
            v = op[k]
            lo = 0 if k in ("src", "pad", "pad_before", "pad_after") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise bad(f"op {i} ({kind}): {k} = {v!r}")
        srcs = op["srcs"] if kind == "concat" else [op["src"]]
        if not isinstance(srcs, list) or not srcs or not all(isinstance(s, int) and 0 <= s < op["dst"] for s in srcs) \
                or op["dst"] >= len(bufs):
            raise bad(f"op {i} ({kind}): buffers {srcs} -> {op['dst']} out of order or range")
        (c, h, w), (co, ho, wo) = bufs[srcs[0]], bufs[op["dst"]]
        if kind == "conv":
            k, s, p, g = op["size"], op["stride"], op["pad"], op["groups"]
            want = (co, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            ok = c % g == 0 and co % g == 0 and op.get("act") in ACTIVATIONS
        elif kind == "maxpool":
            pad = op["pad_before"] + op["pad_after"]
            want = (c, (h + pad - op["size"]) // op["stride"] + 1,
                    (w + pad - op["size"]) // op["stride"] + 1)
            ok = True
        elif kind == "reorg":
            s = op["stride"]
            want, ok = (c * s * s, h // s, w // s), h % s == 0 and w % s == 0
        elif kind == "gather":
            idx = op.get("channels")
            ok = isinstance(idx, list) and bool(idx) and all(
                isinstance(j, int) and not isinstance(j, bool) and 0 <= j < c for j in idx)
            want = (len(idx) if isinstance(idx, list) else 0, h, w)
        else:
            want = (sum(bufs[j][0] for j in srcs), h, w)
            ok = all(tuple(bufs[j][1:]) == (h, w) for j in srcs)
        if not ok or (co, ho, wo) != want:
            raise bad(f"op {i} ({kind}): output buffer {op['dst']} is {[co, ho, wo]}, the op "
                      f"makes {list(want)} from {[c, h, w]}")
        if kind == "conv":
            cout, cin = plan.buffers[op["dst"]][0], plan.buffers[op["src"]][0]
            want = (cout, cin // op["groups"], op["size"], op["size"])
            w = plan.tensors.get(op["weight"])
            b = plan.tensors.get(op["bias"])
            if w is None or tuple(w.shape) != want or b is None or tuple(b.shape) != (cout,):
                raise UserError(f"{path}: op {i} ({op.get('name', 'conv')}): weight must be "
                                f"{want} and bias ({cout},)")


# ---- lowering --------------------------------------------------------------------------

def fold_bn(weight: np.ndarray, bias: Optional[np.ndarray], state: Dict[str, np.ndarray],
            bn: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Fold ``bn`` (a state-dict prefix) into conv weight/bias, in float64 for accuracy."""
    w = weight.astype(np.float64)
    b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
    if bn is not None:
        gamma = state[bn + ".weight"].astype(np.float64)
        beta = state[bn + ".bias"].astype(np.float64)
        mean = state[bn + ".running_mean"].astype(np.float64)
        var = state[bn + ".running_var"].astype(np.float64)
        scale = gamma / np.sqrt(var + BN_EPS)
        w = w * scale[:, None, None, None]
        b = beta + (b - mean) * scale
    return w.astype(np.float32), b.astype(np.float32)


def lower(spec: ModelSpec, state: Dict[str, np.ndarray], size: Optional[int] = None,
          names: Optional[List[str]] = None) -> Plan:
    """Lower a spec + state dict (checkpoint naming, numpy) to a Plan for ``size`` pixels."""
    size = size or spec.size
    check_state(spec, state, spec.name)
    shapes = infer_shapes(spec, size, size)
    convs: Dict[int, list] = {}
    for c in conv_params(spec):
        convs.setdefault(c.layer, []).append(c)
    buffers: List[Tuple[int, int, int]] = [(spec.channels, size, size)]
    ops: List[dict] = []
    tensors: Dict[str, np.ndarray] = {}
    layer_buf: List[int] = []            # buffer holding each spec layer's output
    cur = 0

    def new_buffer(shape) -> int:
        buffers.append(tuple(int(v) for v in shape))
        return len(buffers) - 1

    for i, layer in enumerate(spec.layers):
        if isinstance(layer, (Conv, FastDSC)):
            parts = convs[i]
            index = layer.gather_index() if isinstance(layer, FastDSC) else None
            if index is not None:
                dst = new_buffer((len(index),) + tuple(buffers[cur][1:]))
                ops.append({"op": "gather", "name": f"layers.{i}.gather", "layer": i,
                            "src": cur, "dst": dst, "channels": index})
                cur = dst
            for j, c in enumerate(parts):
                w, b = fold_bn(state[c.prefix + ".weight"], state.get(c.prefix + ".bias"),
                               state, c.bn)
                if j == 0 and len(parts) == 2:   # FastDSC middle: (C, H', W') after first conv
                    h = (buffers[cur][1] + 2 * c.padding - c.size) // c.stride + 1
                    wd = (buffers[cur][2] + 2 * c.padding - c.size) // c.stride + 1
                    dst = new_buffer((c.cout, h, wd))
                else:
                    dst = new_buffer(shapes[i])
                tensors[c.prefix + ".weight"], tensors[c.prefix + ".bias"] = w, b
                ops.append({"op": "conv", "name": c.prefix, "layer": i, "src": cur, "dst": dst,
                            "weight": c.prefix + ".weight", "bias": c.prefix + ".bias",
                            "size": c.size, "stride": c.stride, "pad": c.padding,
                            "groups": c.groups, "act": c.act})
                cur = dst
        elif isinstance(layer, MaxPool):
            dst = new_buffer(shapes[i])
            ops.append({"op": "maxpool", "name": f"layers.{i}", "layer": i, "src": cur,
                        "dst": dst, "size": layer.size, "stride": layer.stride,
                        "pad_before": layer.pad // 2, "pad_after": layer.pad - layer.pad // 2})
            cur = dst
        elif isinstance(layer, Reorg):
            dst = new_buffer(shapes[i])
            ops.append({"op": "reorg", "name": f"layers.{i}", "layer": i, "src": cur,
                        "dst": dst, "stride": layer.stride})
            cur = dst
        elif isinstance(layer, Route):
            srcs = [layer_buf[j] for j in spec.route_sources(i)]
            if len(srcs) == 1:
                cur = srcs[0]
            else:
                cur = new_buffer(shapes[i])
                ops.append({"op": "concat", "name": f"layers.{i}", "layer": i, "srcs": srcs,
                            "dst": cur})
        layer_buf.append(cur)
    return Plan(size=size, channels=spec.channels, buffers=buffers, ops=ops, output=cur,
                tensors=tensors, anchors=list(spec.region.anchors), classes=spec.classes,
                names=list(names or spec.class_names()), spec=spec.to_dict())


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastdsc-yolo")
