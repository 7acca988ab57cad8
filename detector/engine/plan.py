"""The inference plan: a model lowered to a flat list of ops on numbered buffers.

Lowering folds every BatchNorm into the preceding convolution, turns routes into
concatenations (or aliases), and fixes all buffer shapes for one input size, so a backend can
allocate everything once and reuse it every frame. A plan needs numpy only: it is what the
``ort`` (via ``onnx_graph``), ``cuda`` and ``emu`` backends execute, and it saves to one
safetensors file (tensors + JSON in the metadata) that loads without torch.

Ops (``plan.ops``, typed values of ``engine.plan_ops``), all on NCHW float32 buffers with
batch 1:

- ``Conv``: ``src``, ``dst``, ``weight`` [Cout, Cin/groups, k, k], ``bias`` [Cout], ``size``,
  ``stride``, ``pad``, ``groups``, ``act`` (leaky 0.1 / linear / relu). Kinds by shape:
  pointwise GEMM (k=1, groups=1), depthwise (groups=Cin, Cout=Cin*T) or grouped-sum
  (groups=Cout, Cin=Cout*T), regular (groups=1).
- ``MaxPool``: ``size``, ``stride``, ``pad_before``, ``pad_after`` (padding ignored, darknet).
- ``Reorg``: ``stride`` (darknet's layout, see models/blocks.Reorg).
- ``Concat``: ``srcs`` along channels.
- ``Gather``: ``channels`` (source channel indices): dst channel j = src channel
  ``channels[j]`` (repeats and skips allowed). A FastDSC block with per-channel terms lowers
  to gather -> depthwise (one kernel per gathered channel) -> pointwise.

The plan file stores each op as a dict (``Op.to_dict``: ``{"op": "conv", "name": ...}``);
``load_plan`` rebuilds the typed ops from them and checks the plan before any backend sees it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import UserError
from ..models.checks import MAX_LAYER_VALUES
from ..models.params import check_state, conv_params
from ..models.spec import (BN_EPS, AvgPool, Conv, Cost, Dropout, FastDSC, MaxPool, ModelSpec, Reorg,
                           Route, Softmax, infer_shapes)
from . import plan_ops
from .plan_ops import OP_TYPES, Op, PlanError, op_from_dict, op_label

PLAN_VERSION = 1
PLAN_KEY = "fastdsc_plan"
MAX_SIZE = 4096


@dataclass
class Plan:
    size: int
    channels: int
    buffers: List[Tuple[int, int, int]]          # (C, H, W); buffer 0 is the input
    ops: List[Op]
    output: int
    tensors: Dict[str, np.ndarray]
    anchors: List[Tuple[float, float]]
    classes: int
    names: List[str]
    spec: dict = field(default_factory=dict)     # ModelSpec.to_dict() of the source model

    def conv_kind(self, op: plan_ops.Conv) -> str:
        """``pointwise``, ``depthwise``, ``grouped_sum``, ``grouped`` or ``regular``."""
        return op.kind(self.buffers)

    def flops(self, op: Op) -> int:
        """Multiply-adds x 2 of one op (0 for data movement)."""
        return op.flops(self.buffers)

    def total_flops(self) -> int:
        return sum(self.flops(op) for op in self.ops)

    def check(self) -> None:
        """Raises PlanError unless every shape and index is what lowering would make. A plan
        drives native code (the kernel engine allocates its buffers and indexes them with its
        ops), so a plan from a file or built by hand is checked before it runs."""
        if isinstance(self.size, bool) or not isinstance(self.size, int) \
                or not 1 <= self.size <= MAX_SIZE:
            raise PlanError(f"input size {self.size!r} (allowed: 1..{MAX_SIZE})")
        bufs = self.buffers
        if not bufs or not isinstance(self.channels, int) or bufs[0][0] != self.channels:
            raise PlanError("buffer 0 must be the input, with the plan's channel count")
        for b in bufs:
            if len(b) != 3 or min(b) < 1 or b[0] * b[1] * b[2] > MAX_LAYER_VALUES:
                raise PlanError(f"buffer shape {b} (3 positive sides, at most "
                                f"{MAX_LAYER_VALUES:,} values)")
        if not 0 <= self.output < len(bufs):
            raise PlanError(f"output buffer {self.output} does not exist")
        for i, op in enumerate(self.ops):
            if not isinstance(op, Op):
                raise PlanError(f"{type(op).__name__} is not a plan op", f"op {i}")
            try:
                op.check(bufs, self.tensors)
            except PlanError as e:
                raise PlanError(e.what, f"op {i} ({op.label})") from None

    # ---- persistence ------------------------------------------------------------------
    def meta(self) -> dict:
        return {"version": PLAN_VERSION, "size": self.size, "channels": self.channels,
                "buffers": [list(b) for b in self.buffers],
                "ops": [op.to_dict() for op in self.ops],
                "output": self.output, "anchors": [list(a) for a in self.anchors],
                "classes": self.classes, "names": self.names, "spec": self.spec}

    def save(self, path: str) -> None:
        from safetensors.numpy import save_file
        from ..io.atomic import atomic_path
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.tensors.items()}, tmp,
                      metadata={PLAN_KEY: json.dumps(self.meta())})


def load_plan(path: str) -> Plan:
    """Load a plan saved by ``Plan.save`` (numpy and safetensors only). A file that is not
    what ``Plan.save`` writes is refused with a UserError that names the file (and the op)."""
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
                    buffers=[tuple(int(v) for v in b) for b in m["buffers"]],
                    ops=[_read_op(d, i) for i, d in enumerate(m["ops"])],
                    output=int(m["output"]), tensors=tensors,
                    anchors=[(float(a[0]), float(a[1])) for a in m["anchors"]],
                    classes=int(m["classes"]), names=list(m["names"]), spec=m.get("spec", {}))
        plan.check()
    except PlanError as e:
        where = f"{e.op}: " if e.op else ""
        raise UserError(f"{path}: corrupt plan: {where}{e.what}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise UserError(f"{path}: corrupt plan metadata ({type(e).__name__}: {e})") from None
    return plan


def _read_op(d: dict, i: int) -> Op:
    """Op ``i`` of a plan file, errors naming it by its index."""
    try:
        return op_from_dict(d)
    except PlanError as e:
        kind = d.get("op") if isinstance(d, dict) else None
        label = f" ({op_label(kind, d.get('name'))})" if kind in OP_TYPES else ""
        raise PlanError(e.what, f"op {i}{label}") from None


def plan_structure(plan: Plan) -> dict:
    """What the plan computes without its weights: input size and channels, buffers, ops and
    output. Cache keys of measurements (the pointwise forms, the CPU runtime) embed it: the
    timing depends on it, not on the weight values."""
    return {"size": plan.size, "channels": plan.channels, "buffers": plan.buffers,
            "ops": [op.to_dict() for op in plan.ops], "output": plan.output}


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
    if spec.region is None:
        raise UserError(f"{spec.name} is a classifier (no [region]): its weights can seed a "
                        "detector's backbone (detector train), it does not detect")
    check_state(spec, state, spec.name)
    low = _Lowering(spec, state, size)
    for i, layer in enumerate(spec.layers):
        low.layer_buf.append(_LOWER_LAYER[type(layer)](low, i, layer))
    return Plan(size=size, channels=spec.channels, buffers=low.buffers, ops=low.ops,
                output=low.cur, tensors=low.tensors, anchors=list(spec.region.anchors),
                classes=spec.classes, names=list(names or spec.class_names()),
                spec=spec.to_dict())


class _Lowering:
    """The plan being made: buffers, ops and folded tensors so far, and ``cur``, the buffer
    that holds the output of the layers lowered so far. Each ``*_layer`` method lowers one
    spec layer and returns the buffer of its output."""

    def __init__(self, spec: ModelSpec, state: Dict[str, np.ndarray], size: int):
        self.spec, self.state = spec, state
        self.shapes = infer_shapes(spec, size, size)
        self.convs: Dict[int, list] = {}
        for c in conv_params(spec):
            self.convs.setdefault(c.layer, []).append(c)
        self.buffers: List[Tuple[int, int, int]] = [(spec.channels, size, size)]
        self.ops: List[Op] = []
        self.tensors: Dict[str, np.ndarray] = {}
        self.layer_buf: List[int] = []            # buffer holding each spec layer's output
        self.cur = 0

    def new_buffer(self, shape) -> int:
        self.buffers.append(tuple(int(v) for v in shape))
        return len(self.buffers) - 1

    def emit(self, op: Op) -> int:
        self.ops.append(op)
        self.cur = op.dst
        return op.dst

    def conv_layer(self, i: int, layer) -> int:
        """A conv, or a FastDSC block: [gather ->] first conv -> second conv."""
        parts = self.convs[i]
        index = layer.gather_index() if isinstance(layer, FastDSC) else None
        if index is not None:
            dst = self.new_buffer((len(index),) + tuple(self.buffers[self.cur][1:]))
            self.emit(plan_ops.Gather(name=f"layers.{i}.gather", layer=i, src=self.cur, dst=dst,
                                      channels=index))
        for j, c in enumerate(parts):
            w, b = fold_bn(self.state[c.prefix + ".weight"], self.state.get(c.prefix + ".bias"),
                           self.state, c.bn)
            if j == 0 and len(parts) == 2:   # FastDSC middle: (C, H', W') after first conv
                _, h, wd = self.buffers[self.cur]
                dst = self.new_buffer((c.cout, (h + 2 * c.padding - c.size) // c.stride + 1,
                                       (wd + 2 * c.padding - c.size) // c.stride + 1))
            else:
                dst = self.new_buffer(self.shapes[i])
            self.tensors[c.prefix + ".weight"], self.tensors[c.prefix + ".bias"] = w, b
            self.emit(plan_ops.Conv(name=c.prefix, layer=i, src=self.cur, dst=dst,
                                    weight=c.prefix + ".weight", bias=c.prefix + ".bias",
                                    size=c.size, stride=c.stride, pad=c.padding, groups=c.groups,
                                    act=c.act))
        return self.cur

    def maxpool_layer(self, i: int, layer: MaxPool) -> int:
        return self.emit(plan_ops.MaxPool(
            name=f"layers.{i}", layer=i, src=self.cur, dst=self.new_buffer(self.shapes[i]),
            size=layer.size, stride=layer.stride, pad_before=layer.pad // 2,
            pad_after=layer.pad - layer.pad // 2))

    def reorg_layer(self, i: int, layer: Reorg) -> int:
        return self.emit(plan_ops.Reorg(name=f"layers.{i}", layer=i, src=self.cur,
                                        dst=self.new_buffer(self.shapes[i]), stride=layer.stride))

    def route_layer(self, i: int, layer: Route) -> int:
        """One source: an alias of its buffer; several: a concat."""
        srcs = [self.layer_buf[j] for j in self.spec.route_sources(i)]
        if len(srcs) == 1:
            self.cur = srcs[0]
            return self.cur
        return self.emit(plan_ops.Concat(name=f"layers.{i}", layer=i, srcs=srcs,
                                         dst=self.new_buffer(self.shapes[i])))


    def identity_layer(self, i: int, layer) -> int:
        """Dropout and cost: their input, as at inference (no op)."""
        return self.cur

    def classifier_layer(self, i: int, layer) -> int:
        raise UserError(f"layer {i} of {self.spec.name} is a classifier's {layer.type}; "
                        "a detector's plan has none")


_LOWER_LAYER = {Conv: _Lowering.conv_layer, FastDSC: _Lowering.conv_layer,
                MaxPool: _Lowering.maxpool_layer, Reorg: _Lowering.reorg_layer,
                Route: _Lowering.route_layer, Dropout: _Lowering.identity_layer,
                Cost: _Lowering.identity_layer, AvgPool: _Lowering.classifier_layer,
                Softmax: _Lowering.classifier_layer}
