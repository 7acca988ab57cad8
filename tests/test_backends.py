"""Every way of running a model gives the same detections: torch, ort, checkpoints,
exported darknet files, lowered plans, exported ONNX."""
import cv2
import numpy as np
import pytest

import detector
from conftest import random_state
from detector.api import Detector, LoadedModel
from detector.engine.runners import make_runner
from detector.engine.plan import lower
from detector.io.checkpoint import save_checkpoint
from detector.models.spec_yaml import load_spec

SIZE = 160


@pytest.fixture(scope="module")
def model():
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    return spec, random_state(spec, seed=5)


@pytest.fixture(scope="module")
def frame():
    """A real-looking frame: smooth colour blobs on noise, 640x360 (non-square)."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (0, 0), 3)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, 560)), int(rng.integers(0, 300))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 200)), y + int(rng.integers(20, 150))), c, -1)
    return img


def detector_for(spec, state, backend, tmp_path, conf=0.05, **opts):
    m = LoadedModel(spec, state, spec.class_names(), "test")
    runner = make_runner(backend, spec, state, lambda: lower(spec, state, SIZE, m.names), "cpu",
                         **opts)
    return Detector(m, runner, SIZE, conf=conf)


def assert_same_detections(a, b, px=0.05):
    assert len(a) == len(b) > 0
    for da, db in zip(sorted(a, key=lambda d: -d.score), sorted(b, key=lambda d: -d.score)):
        assert da.class_id == db.class_id and da.class_name == db.class_name
        assert abs(da.score - db.score) < 1e-4
        np.testing.assert_allclose(da.box, db.box, atol=px)


@pytest.mark.torch
def test_torch_and_ort_give_the_same_raw_output_and_detections(model, frame, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec, state = model
    t = detector_for(spec, state, "torch", tmp_path)
    o = detector_for(spec, state, "ort", tmp_path)
    blob, lb = t.preprocess(frame)
    raw_t = t.forward(blob.copy())
    raw_o = o.forward(blob.copy())
    np.testing.assert_allclose(raw_o, raw_t, rtol=1e-4, atol=1e-4)
    assert_same_detections(t(frame), o(frame))


@pytest.mark.torch
def test_pointwise_as_gemm_or_as_conv_is_the_same_function(model, frame, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec, state = model
    gemm = detector_for(spec, state, "torch", tmp_path, pointwise="gemm")
    conv = detector_for(spec, state, "torch", tmp_path, pointwise="conv")
    mm = detector_for(spec, state, "ort", tmp_path, pointwise="matmul")
    assert_same_detections(gemm(frame), conv(frame))
    assert_same_detections(gemm(frame), mm(frame))


@pytest.mark.torch
def test_checkpoint_darknet_export_and_plan_load_to_the_same_detector(model, frame, tmp_path,
                                                                      monkeypatch):
    from detector.export import export
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec, state = model
    ref = detector_for(spec, state, "torch", tmp_path)(frame)
    ck = str(tmp_path / "m.safetensors")
    save_checkpoint(ck, spec, state)
    assert_same_detections(ref, detector.load(ck, backend="torch", img_size=SIZE, conf=0.05)(frame))
    cfg, weights = export(ck, "darknet", str(tmp_path / "dk"))
    dk = detector.load(weights, cfg=cfg, backend="torch", img_size=SIZE, conf=0.05)
    assert_same_detections(ref, dk(frame))
    plan = export(ck, "plan", str(tmp_path / "m.plan"), img_size=SIZE)[0]
    assert_same_detections(ref, detector.load(plan, backend="ort", conf=0.05)(frame))


@pytest.mark.torch
def test_exported_onnx_runs_in_onnxruntime_like_the_model(model, frame, tmp_path):
    import onnx
    import onnxruntime as ort
    from detector.export import export
    spec, state = model
    ck = str(tmp_path / "m.safetensors")
    save_checkpoint(ck, spec, state)
    path = export(ck, "onnx", str(tmp_path / "m.onnx"), img_size=SIZE, dynamic_batch=True)[0]
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["img_size"] == str(SIZE) and meta["classes"] == "20"
    det = detector.load(ck, backend="torch", img_size=SIZE)
    blob, _ = det.preprocess(frame)
    batch = np.concatenate([blob, blob[:, :, ::-1].copy()])
    out = ort.InferenceSession(path).run(None, {"images": batch})[0]
    np.testing.assert_allclose(out[:1], det.forward(blob), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[1:], det.forward(batch[1:]), rtol=1e-4, atol=1e-4)


@pytest.mark.torch
def test_zoo_names_give_reproducible_random_models():
    a = detector.load("random:yolov2-tiny-voc-fastdsc", backend="torch", img_size=96, conf=0.0)
    b = detector.load("random:yolov2-tiny-voc-fastdsc", backend="torch", img_size=96, conf=0.0)
    x = np.random.default_rng(0).random((1, 3, 96, 96), np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_api_detections_are_typed_and_in_frame(frame):
    det = detector.load("random:yolov2-tiny-voc-fastdsc", backend="ort", img_size=SIZE, conf=0.02)
    out = det(frame)
    assert out and all(isinstance(d, detector.Detection) for d in out)
    for d in out:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 360
        assert d.class_name == det.names[d.class_id] and 0.02 < d.score <= 1


@pytest.mark.torch
def test_build_model_is_a_torch_module():
    import torch
    m = detector.build_model("yolov2-tiny-voc-fastdsc")
    assert isinstance(m, torch.nn.Module)
    assert "layers.2.dw.weight" in m.state_dict() and "layers.2.pw.weight" in m.state_dict()
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 125, 2, 2)


def test_ort_inference_leaves_the_callers_float_state_alone():
    """ORT's denormal-as-zero option sets flush-to-zero on the calling thread; the API must
    not change how the user's own float code behaves after a detection."""
    import detector
    model = detector.load("random:yolov2-tiny-voc-fastdsc", backend="ort", img_size=128)
    model(np.zeros((96, 128, 3), np.uint8))
    assert np.array([1e-310]) * 1.0 != 0.0


# ---- the runner contract ---------------------------------------------------------------------

RUNTIMES = [("torch", "fp32"), ("torch", "bf16"), ("ort", "fp32"), ("ort", "int8"),
            ("emu", "fp32"), ("cuda", "fp32")]


def _runnable(backend, precision):
    from detector.engine.runners import available_backends
    if backend not in available_backends():
        pytest.skip(f"{backend} is not available here")
    if precision == "bf16":
        from detector.engine.runners.torch_bf16 import bf16_supported
        if not bf16_supported():
            pytest.skip("no oneDNN bf16 convolutions on this CPU")


@pytest.mark.parametrize("backend,precision", RUNTIMES)
def test_every_runner_is_what_it_declares(model, backend, precision, tmp_path):
    """Name, backend and precision as the registry says; ``reuses_output`` true exactly when
    two calls return the same memory."""
    from detector.engine.runner import Runner
    from detector.engine.runners import RUNNERS, runner_name
    _runnable(backend, precision)
    spec, state = model
    opts = {"cache_dir": str(tmp_path)} if backend == "ort" else {}
    r = make_runner(backend, spec, state, lambda: lower(spec, state, SIZE), None,
                    precision=precision, **opts)
    assert isinstance(r, Runner) and type(r) is RUNNERS[runner_name(backend, precision)]
    assert (r.backend, r.precision) == (backend, precision)
    assert r.describe()["runner"] == r.name == runner_name(backend, precision)
    rng = np.random.default_rng(0)
    a = r(rng.random((1, 3, SIZE, SIZE), np.float32))
    b = r(rng.random((1, 3, SIZE, SIZE), np.float32))
    assert np.shares_memory(a, b) == r.reuses_output
    assert r.device_preprocess == r.device_decode == (backend in ("cuda", "emu"))
    r.close()


def test_bf16_is_its_own_runner_of_the_torch_backend():
    from detector.engine.runners import RUNNERS, runner_name
    bf16 = RUNNERS[runner_name("torch", "bf16")]
    assert (bf16.name, bf16.backend, bf16.precisions) == ("torch-bf16", "torch", ("bf16",))
    assert RUNNERS[runner_name("torch", "fp32")].name == "torch"


def test_emu_runs_the_gpu_data_path_and_decodes_like_the_host(model, frame, tmp_path,
                                                               monkeypatch):
    """The emulator letterboxes and decodes with the cuda kernels: its region decode equals
    the host's on the same raw output, and its detections equal ORT's on the same frame."""
    from detector.engine.kernel_engine import DeviceInput
    from detector.postprocess import decode_region
    spec, state = model
    e = detector_for(spec, state, "emu", tmp_path)
    dev, lb = e.preprocess(frame)
    assert isinstance(dev, DeviceInput)           # the frame went to the engine as bytes
    raw = e.forward(dev).copy()
    boxes, scores = e.runner.decode()
    host = decode_region(raw[0], e.anchors, e.classes)
    np.testing.assert_allclose(boxes, host.boxes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, host.scores, rtol=1e-5, atol=1e-6)
    dets = e(frame)
    assert_same_detections(dets, e.postprocess(raw, lb))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert_same_detections(dets, detector_for(spec, state, "ort", tmp_path)(frame))
