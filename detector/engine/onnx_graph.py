"""Plan -> ONNX graph (numpy + onnx only; no torch).

The graph is what ONNX Runtime runs for the ``ort`` backend and what ``detector export
--format onnx`` writes for TensorRT (``trtexec --onnx=... --fp16``): opset 13, static input
``images`` [1, 3, S, S] (or a dynamic batch), output ``raw`` [N, A*(5+C), S/32, S/32]; region
decode + NMS stay in post-processing (``detector.postprocess``), where TensorRT 8 needs no
plugins. The pointwise convolutions are emitted as 1x1 ``Conv`` nodes or as FastDSC's
``MatMul`` (GEMM) form, per layer (``pointwise=``), so the faster form can be measured and
chosen per runtime.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Union

import numpy as np

from .plan import Plan
from .plan_ops import Concat, Conv, Gather, MaxPool, Op, Reorg, handler

OPSET = 13
# Bumped whenever the graph built for a plan changes, so cached graphs are rebuilt.
GRAPH_VERSION = 4
POINTWISE_FORMS = ("conv", "matmul")


def plan_to_onnx(plan: Plan, pointwise: Union[str, Dict[str, str]] = "conv",
                 dynamic_batch: bool = False, name: str = "fastdsc-yolo", ort_ops: bool = False):
    """Build an ``onnx.ModelProto``. ``pointwise`` is ``conv`` or ``matmul`` for every
    pointwise op, or a dict op-name -> form (missing names use ``conv``).

    By default the graph keeps to the op set TensorRT 8 parses (Conv, MatMul, Add, Reshape,
    Transpose, Gather, ...), as ``detector export`` writes it. ``ort_ops`` (the ``ort``
    backend's own graph) uses two ops ONNX Runtime runs faster, same results: one ``Gemm``
    (bias in its epilogue, activation fused by ORT) for a static-batch pointwise GEMM instead
    of MatMul + Add, and ``SpaceToDepth`` for darknet's reorg instead of a 6-D Transpose
    (about 6x faster in ORT)."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph(plan, pointwise, dynamic_batch, ort_ops)
    last = plan.ops[-1].dst if plan.ops else None
    for op in plan.ops:
        # The network's last op writes ``raw`` itself (no trailing Identity to run).
        out = "raw" if op.dst == plan.output == last else f"buf{op.dst}"
        handler(_EMITTERS, op)(g, op, out)
        g.names[op.dst] = out

    if g.names.get(plan.output) != "raw":
        g.node("Identity", [g.names[plan.output]], ["raw"], "output")
    c_out, gh, gw = plan.buffers[plan.output]
    n_dim = "N" if dynamic_batch else 1
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                           [n_dim, plan.channels, plan.size, plan.size])
    raw = helper.make_tensor_value_info("raw", TensorProto.FLOAT, [n_dim, c_out, gh, gw])
    graph = helper.make_graph(g.nodes, name, [images], [raw], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastdsc-yolo")
    model.ir_version = 8        # readable by onnxruntime >= 1.10 and TensorRT 8
    onnx.checker.check_model(model)
    return model


class _Graph:
    """The graph being built: nodes, initializers, and the tensor holding each plan buffer."""

    def __init__(self, plan: Plan, pointwise, dynamic_batch: bool, ort_ops: bool):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.plan, self.pointwise, self.ort_ops = plan, pointwise, ort_ops
        self.dynamic_batch = dynamic_batch
        self.batch = -1 if dynamic_batch else 1
        self.nodes: List = []
        self.inits: List = []
        self.names: Dict[int, str] = {0: "images"}
        self._counter = 0

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def const(self, arr: np.ndarray, prefix: str) -> str:
        n = self.fresh(prefix)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def shape(self, *dims: int) -> str:
        return self.const(np.array(dims, np.int64), "shape")

    def node(self, op_type: str, inputs: List[str], outputs: List[str], name: str, **attrs) -> None:
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def activation(self, x: str, act: str, out: str, tag: str) -> str:
        # A separate node: ONNX Runtime fuses Conv + LeakyRelu/Relu into one kernel.
        if act == "leaky":
            self.node("LeakyRelu", [x], [out], tag + "/act", alpha=0.1)
        elif act == "relu":
            self.node("Relu", [x], [out], tag + "/act")
        else:
            self.node("Identity", [x], [out], tag + "/act")
        return out

    def pointwise_form(self, op: Conv) -> str:
        p = self.pointwise
        form = p.get(op.name, "conv") if isinstance(p, dict) else p
        if form not in POINTWISE_FORMS:
            raise ValueError(f"pointwise form {form!r}: expected one of {POINTWISE_FORMS}")
        return form


# ---- one emitter per op type: (graph, op, name of the output tensor) -------------------------

def _emit_conv(g: _Graph, op: Conv, out: str) -> None:
    form = g.pointwise_form(op)
    if g.plan.conv_kind(op) == "pointwise" and form == "matmul":
        _emit_gemm(g, op, out)
        return
    w, b = g.plan.tensors[op.weight], g.plan.tensors[op.bias]
    k, p, y = op.size, op.pad, g.fresh("pre")
    g.node("Conv", [g.names[op.src], g.const(w, op.weight), g.const(b, op.bias)], [y], op.name,
           kernel_shape=[k, k], strides=[op.stride] * 2, pads=[p, p, p, p], group=op.groups)
    g.activation(y, op.act, out, op.name)


def _emit_gemm(g: _Graph, op: Conv, out: str) -> None:
    """A pointwise conv as FastDSC's GEMM ``W[Cout, Cin] @ X[Cin, H*W] + b``."""
    cin, h, wd = g.plan.buffers[op.src]
    cout = g.plan.buffers[op.dst][0]
    x, tag = g.names[op.src], op.name
    w2d = g.const(g.plan.tensors[op.weight].reshape(cout, cin), op.name + ".w2d")
    b2d = g.const(g.plan.tensors[op.bias].reshape(cout, 1), op.name + ".b2d")
    xg, mm, yg = g.fresh("x2"), g.fresh("gemm"), g.fresh("act")
    if g.ort_ops and not g.dynamic_batch:   # one Gemm, bias in its epilogue
        g.node("Reshape", [x, g.shape(cin, h * wd)], [xg], tag + "/reshape_in")
        g.node("Gemm", [w2d, xg, b2d], [mm], tag + "/gemm")
    else:                                   # [Cout, Cin] @ [N, Cin, HW] + b
        g.node("Reshape", [x, g.shape(g.batch, cin, h * wd)], [xg], tag + "/reshape_in")
        y = g.fresh("mm")
        g.node("MatMul", [w2d, xg], [y], tag + "/matmul")
        g.node("Add", [y, b2d], [mm], tag + "/bias")
    # activation on the GEMM output, before the reshape: ORT fuses Gemm + act
    g.activation(mm, op.act, yg, tag)
    g.node("Reshape", [yg, g.shape(g.batch, cout, h, wd)], [out], tag + "/reshape_out")


def _emit_maxpool(g: _Graph, op: MaxPool, out: str) -> None:
    a, b = op.pad_before, op.pad_after
    g.node("MaxPool", [g.names[op.src]], [out], op.name, kernel_shape=[op.size] * 2,
           strides=[op.stride] * 2, pads=[a, a, b, b])


def _emit_reorg(g: _Graph, op: Reorg, out: str) -> None:
    # Darknet's reorg reads its C x H x W input as (C/s^2) x (H*s) x (W*s) and writes the
    # channel-major space-to-depth of that view (models/blocks.Reorg).
    s, tag, x = op.stride, op.name, g.names[op.src]
    c, h, wd = g.plan.buffers[op.src]
    if g.ort_ops:       # Reshape -> SpaceToDepth -> Reshape
        r1, moved = g.fresh("reorg_view"), g.fresh("reorg_s2d")
        g.node("Reshape", [x, g.shape(g.batch, c // (s * s), h * s, wd * s)], [r1], tag + "/view")
        g.node("SpaceToDepth", [r1], [moved], tag + "/space_to_depth", blocksize=s)
    else:               # the same as a 6-D Transpose
        r1, moved = g.fresh("reorg6"), g.fresh("reorgT")
        g.node("Reshape", [x, g.shape(g.batch, c // (s * s), h, s, wd, s)], [r1], tag + "/split")
        g.node("Transpose", [r1], [moved], tag + "/transpose", perm=[0, 3, 5, 1, 2, 4])
    g.node("Reshape", [moved, g.shape(g.batch, c * s * s, h // s, wd // s)], [out], tag + "/merge")


def _emit_gather(g: _Graph, op: Gather, out: str) -> None:
    # dst channel j = src channel channels[j] (repeats and skips allowed)
    idx = g.const(np.asarray(op.channels, np.int64), op.name + ".channels")
    g.node("Gather", [g.names[op.src], idx], [out], op.name, axis=1)


def _emit_concat(g: _Graph, op: Concat, out: str) -> None:
    g.node("Concat", [g.names[i] for i in op.srcs], [out], op.name, axis=1)


_EMITTERS: Dict[type, Callable[[_Graph, Op, str], None]] = {
    Conv: _emit_conv, MaxPool: _emit_maxpool, Reorg: _emit_reorg, Gather: _emit_gather,
    Concat: _emit_concat}


def region_metadata(plan: Plan) -> Dict[str, str]:
    """Metadata stored in exported ONNX files so post-processing needs nothing else."""
    import json
    meta = {"anchors": json.dumps([list(a) for a in plan.anchors]), "classes": str(plan.classes),
            "names": json.dumps(plan.names), "img_size": str(plan.size),
            "postprocess": "darknet region decode (detector.postprocess.decode_region) + per-class NMS",
            "resize": plan.spec.get("input", {}).get("resize", "opencv")}
    region = plan.spec.get("region") or {}
    if region.get("tree"):         # YOLO9000: the class softmax is per group of the tree
        meta["tree"] = json.dumps(region["tree"])
        meta["postprocess"] = ("darknet region decode with a WordTree: a softmax per group of "
                               "siblings, products along each class's path, darknet's "
                               "hierarchy_top_prediction (detector.postprocess.decode_region "
                               "with tree=) + per-class NMS")
    if region.get("map"):
        meta["map"] = json.dumps(region["map"])
    return meta


def attach_metadata(model, meta: Optional[Dict[str, str]]) -> None:
    for k, v in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
