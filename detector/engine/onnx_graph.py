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

from typing import Dict, List, Optional, Union

import numpy as np

from .plan import Plan

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
    from onnx import TensorProto, helper, numpy_helper

    nodes: List = []
    inits: List = []
    names = {0: "images"}
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(arr: np.ndarray, prefix: str) -> str:
        n = fresh(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def activation(x: str, act: str, out: str, tag: str) -> str:
        # A separate node: ONNX Runtime fuses Conv + LeakyRelu/Relu into one kernel.
        if act == "leaky":
            nodes.append(helper.make_node("LeakyRelu", [x], [out], alpha=0.1, name=tag + "/act"))
        elif act == "relu":
            nodes.append(helper.make_node("Relu", [x], [out], name=tag + "/act"))
        else:
            nodes.append(helper.make_node("Identity", [x], [out], name=tag + "/act"))
        return out

    batch = -1 if dynamic_batch else 1
    last = plan.ops[-1]["dst"] if plan.ops else None
    for op in plan.ops:
        # The network's last op writes ``raw`` itself (no trailing Identity to run).
        out = "raw" if op["dst"] == plan.output == last else f"buf{op['dst']}"
        kind = op["op"]
        tag = op["name"]
        if kind == "conv":
            x = names[op["src"]]
            w = plan.tensors[op["weight"]]
            b = plan.tensors[op["bias"]]
            form = pointwise.get(op["name"], "conv") if isinstance(pointwise, dict) else pointwise
            if form not in POINTWISE_FORMS:
                raise ValueError(f"pointwise form {form!r}: expected one of {POINTWISE_FORMS}")
            if plan.conv_kind(op) == "pointwise" and form == "matmul":
                cin, h, wd = plan.buffers[op["src"]]
                cout = plan.buffers[op["dst"]][0]
                w2d = const(w.reshape(cout, cin), op["name"] + ".w2d")
                b2d = const(b.reshape(cout, 1), op["name"] + ".b2d")
                xg, mm, yg = fresh("x2"), fresh("gemm"), fresh("act")
                if ort_ops and not dynamic_batch:   # one Gemm, bias in its epilogue
                    nodes.append(helper.make_node("Reshape", [x, const(np.array([cin, h * wd], np.int64), "shape")], [xg], name=tag + "/reshape_in"))
                    nodes.append(helper.make_node("Gemm", [w2d, xg, b2d], [mm], name=tag + "/gemm"))
                else:                 # [Cout, Cin] @ [N, Cin, HW] + b
                    nodes.append(helper.make_node("Reshape", [x, const(np.array([batch, cin, h * wd], np.int64), "shape")], [xg], name=tag + "/reshape_in"))
                    y = fresh("mm")
                    nodes.append(helper.make_node("MatMul", [w2d, xg], [y], name=tag + "/matmul"))
                    nodes.append(helper.make_node("Add", [y, b2d], [mm], name=tag + "/bias"))
                # activation on the GEMM output, before the reshape: ORT fuses Gemm + act
                activation(mm, op["act"], yg, tag)
                nodes.append(helper.make_node("Reshape", [yg, const(np.array([batch, cout, h, wd], np.int64), "shape")], [out], name=tag + "/reshape_out"))
            else:
                k, p = op["size"], op["pad"]
                y = fresh("pre")
                nodes.append(helper.make_node(
                    "Conv", [x, const(w, op["weight"]), const(b, op["bias"])], [y],
                    kernel_shape=[k, k], strides=[op["stride"]] * 2, pads=[p, p, p, p],
                    group=op["groups"], name=op["name"]))
                activation(y, op["act"], out, tag)
        elif kind == "maxpool":
            a, b = op["pad_before"], op["pad_after"]
            nodes.append(helper.make_node("MaxPool", [names[op["src"]]], [out],
                                          kernel_shape=[op["size"]] * 2,
                                          strides=[op["stride"]] * 2, pads=[a, a, b, b],
                                          name=op["name"]))
        elif kind == "reorg":
            # Darknet's reorg reads its C x H x W input as (C/s^2) x (H*s) x (W*s) and writes
            # the channel-major space-to-depth of that view (models/blocks.Reorg).
            s = op["stride"]
            c, h, wd = plan.buffers[op["src"]]
            if ort_ops:       # Reshape -> SpaceToDepth -> Reshape
                r1, sd = fresh("reorg_view"), fresh("reorg_s2d")
                nodes.append(helper.make_node("Reshape", [names[op["src"]], const(
                    np.array([batch, c // (s * s), h * s, wd * s], np.int64), "shape")], [r1],
                    name=tag + "/view"))
                nodes.append(helper.make_node("SpaceToDepth", [r1], [sd], blocksize=s,
                                              name=tag + "/space_to_depth"))
                src_final = sd
            else:             # the same as a 6-D Transpose
                r1, src_final = fresh("reorg6"), fresh("reorgT")
                nodes.append(helper.make_node("Reshape", [names[op["src"]], const(
                    np.array([batch, c // (s * s), h, s, wd, s], np.int64), "shape")], [r1],
                    name=tag + "/split"))
                nodes.append(helper.make_node("Transpose", [r1], [src_final],
                                              perm=[0, 3, 5, 1, 2, 4], name=tag + "/transpose"))
            nodes.append(helper.make_node("Reshape", [src_final, const(
                np.array([batch, c * s * s, h // s, wd // s], np.int64), "shape")], [out],
                name=tag + "/merge"))
        elif kind == "gather":
            # dst channel j = src channel channels[j] (repeats and skips allowed)
            idx = const(np.asarray(op["channels"], np.int64), tag + ".channels")
            nodes.append(helper.make_node("Gather", [names[op["src"]], idx], [out], axis=1,
                                          name=tag))
        elif kind == "concat":
            nodes.append(helper.make_node("Concat", [names[i] for i in op["srcs"]], [out], axis=1,
                                          name=tag))
        else:
            raise ValueError(f"unknown plan op {kind!r}")
        names[op["dst"]] = out

    if names.get(plan.output) != "raw":
        nodes.append(helper.make_node("Identity", [names[plan.output]], ["raw"], name="output"))
    c_out, gh, gw = plan.buffers[plan.output]
    n_dim = "N" if dynamic_batch else 1
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n_dim, plan.channels, plan.size, plan.size])],
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [n_dim, c_out, gh, gw])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastdsc-yolo")
    model.ir_version = 8        # readable by onnxruntime >= 1.10 and TensorRT 8
    onnx.checker.check_model(model)
    return model


def region_metadata(plan: Plan) -> Dict[str, str]:
    """Metadata stored in exported ONNX files so post-processing needs nothing else."""
    import json
    return {"anchors": json.dumps([list(a) for a in plan.anchors]), "classes": str(plan.classes),
            "names": json.dumps(plan.names), "img_size": str(plan.size),
            "postprocess": "darknet region decode (detector.postprocess.decode_region) + per-class NMS"}


def attach_metadata(model, meta: Optional[Dict[str, str]]) -> None:
    for k, v in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
