"""ONNX for TensorRT: the exported graph passes onnx.checker, uses only opset-13 operators
that TensorRT 8 (JetPack 4.6) parses, and gives the torch model's output in ONNX Runtime,
with a static and a dynamic batch. (trtexec itself runs only on a board.)"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from detector.engine.onnx_graph import plan_to_onnx  # noqa: E402
from detector.engine.plan import lower  # noqa: E402
from detector.export import export  # noqa: E402
from detector.io.checkpoint import save_checkpoint  # noqa: E402
from detector.models.params import init_params  # noqa: E402
from detector.models.spec_yaml import load_spec  # noqa: E402
from detector.models.yolov2 import YOLOv2, load_state  # noqa: E402

# Operators the graph may use: all in the default domain at opset 13 and supported by the
# TensorRT 8.0/8.2 ONNX parser (no plugins).
TENSORRT8_OPS = {"Conv", "LeakyRelu", "Relu", "Identity", "MaxPool", "Reshape", "Transpose",
                 "Concat", "MatMul", "Add"}


def random_state(spec, seed):
    """Random weights that keep the signal alive through every layer (He-uniform; the zoo's
    darknet initialisation shrinks activations ~3x per layer, so outputs would hardly depend
    on the input), plus random BN statistics and biases, so BN folding is exercised."""
    rng = np.random.default_rng(seed)
    state = init_params(spec, seed)
    for k, v in state.items():
        if k.endswith(".weight") and v.ndim == 4:
            state[k] = v * np.float32(np.sqrt(3.0))
        elif k.endswith("running_mean") or k.endswith(".bias"):
            state[k] = rng.normal(0, 0.1, v.shape).astype(np.float32)
        elif k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k.endswith(".weight") and v.ndim == 1:
            state[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
    return state


def torch_forward(spec, state, x):
    model = load_state(YOLOv2(spec), state).eval()
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def ort_forward(path_or_bytes, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(path_or_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run(["raw"], {"images": x})[0]


def assert_close(got, want):
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * max(scale, 1.0))


def assert_input_matters(model_bytes, x, size):
    """The comparison means something only if the output depends on the input."""
    other = np.random.default_rng(99).random((1, 3, size, size), dtype=np.float32)
    a, b = ort_forward(model_bytes, x[:1]), ort_forward(model_bytes, other)
    assert np.abs(a - b).max() > 1e-2 * np.abs(a).max()


def check_tensorrt_ready(model, size, dynamic):
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert model.ir_version <= 8
    ops = {n.op_type for n in model.graph.node}
    assert ops <= TENSORRT8_OPS, ops - TENSORRT8_OPS
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "images" and out.name == "raw"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == (["N"] if dynamic else [1]) + [3, size, size]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    out_dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims[1:] == [125, size // 32, size // 32]


def test_cli_export_tiny_fastdsc_160_matches_torch(tmp_path):
    """`detector export` of a deployable checkpoint, as a user runs it before trtexec."""
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    state = random_state(spec, 1)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(str(ckpt), spec, state)
    out = tmp_path / "tiny.onnx"
    proc = run_cli("export", "--weights", ckpt, "--format", "onnx", "--out", out,
                   "--img-size", 160)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = onnx.load(str(out))
    check_tensorrt_ready(model, 160, dynamic=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["anchors"]) == [list(a) for a in spec.region.anchors]
    assert int(meta["classes"]) == 20 and meta["img_size"] == "160"
    x = np.random.default_rng(1).random((1, 3, 160, 160), dtype=np.float32)
    assert_close(ort_forward(str(out), x), torch_forward(spec, state, x))
    assert_input_matters(str(out), x, 160)


@pytest.mark.parametrize("pointwise", ["conv", "matmul"])
def test_tiny_fastdsc_folded_bn_static_batch(pointwise):
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    state = random_state(spec, 3)
    model = plan_to_onnx(lower(spec, state, 160), pointwise)
    check_tensorrt_ready(model, 160, dynamic=False)
    x = np.random.default_rng(2).random((1, 3, 160, 160), dtype=np.float32)
    assert_close(ort_forward(model.SerializeToString(), x), torch_forward(spec, state, x))
    assert_input_matters(model.SerializeToString(), x, 160)


@pytest.mark.parametrize("name,pointwise", [("yolov2-tiny-voc-fastdsc", "conv"),
                                            ("yolov2-voc-fastdsc", "matmul")])
def test_dynamic_batch_of_two(name, pointwise):
    """Batch 2 through a dynamic-batch graph; yolov2-voc-fastdsc adds reorg + concat."""
    spec = load_spec(name)
    state = random_state(spec, 5)
    model = plan_to_onnx(lower(spec, state, 160), pointwise, dynamic_batch=True)
    check_tensorrt_ready(model, 160, dynamic=True)
    x = np.random.default_rng(4).random((2, 3, 160, 160), dtype=np.float32)
    got = ort_forward(model.SerializeToString(), x)
    assert_close(got, torch_forward(spec, state, x))
    # Each image's output is its own (no mixing across the batch).
    assert_close(ort_forward(model.SerializeToString(), x[1:]), got[1:])
    assert np.abs(got[0] - got[1]).max() > 1e-2 * np.abs(got).max()


def test_export_api_dynamic_batch_writes_checked_file(tmp_path):
    out = str(tmp_path / "voc.onnx")
    assert export("random:yolov2-voc-fastdsc", "onnx", out, img_size=128, dynamic_batch=True) == [out]
    onnx.checker.check_model(out, full_check=True)
    model = onnx.load(out)
    check_tensorrt_ready(model, 128, dynamic=True)
    assert os.path.getsize(out) > 4 * 7_000_000      # fp32 weights of ~7M parameters inside
