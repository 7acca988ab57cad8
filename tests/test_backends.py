"""Every way of running a model gives the same detections: torch, ort, checkpoints,
exported darknet files, lowered plans, exported ONNX."""
import cv2
import numpy as np
import pytest

import detector
from conftest import random_state
from detector.api import Detector, LoadedModel
from detector.engine.backends import make_runner
from detector.engine.plan import lower
from detector.io.checkpoint import save_checkpoint
from detector.models.spec import load_spec

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
    return Detector(m, backend, runner, SIZE, conf=conf)


def assert_same_detections(a, b, px=0.05):
    assert len(a) == len(b) > 0
    for da, db in zip(sorted(a, key=lambda d: -d.score), sorted(b, key=lambda d: -d.score)):
        assert da.class_id == db.class_id and da.class_name == db.class_name
        assert abs(da.score - db.score) < 1e-4
        np.testing.assert_allclose(da.box, db.box, atol=px)


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


def test_pointwise_as_gemm_or_as_conv_is_the_same_function(model, frame, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec, state = model
    gemm = detector_for(spec, state, "torch", tmp_path, pointwise="gemm")
    conv = detector_for(spec, state, "torch", tmp_path, pointwise="conv")
    mm = detector_for(spec, state, "ort", tmp_path, pointwise="matmul")
    assert_same_detections(gemm(frame), conv(frame))
    assert_same_detections(gemm(frame), mm(frame))


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


def test_zoo_names_give_reproducible_random_models():
    a = detector.load("yolov2-tiny-voc-fastdsc", backend="torch", img_size=96, conf=0.0)
    b = detector.load("yolov2-tiny-voc-fastdsc", backend="torch", img_size=96, conf=0.0)
    x = np.random.default_rng(0).random((1, 3, 96, 96), np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_api_detections_are_typed_and_in_frame(frame):
    det = detector.load("yolov2-tiny-voc-fastdsc", backend="ort", img_size=SIZE, conf=0.02)
    out = det(frame)
    assert out and all(isinstance(d, detector.Detection) for d in out)
    for d in out:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 360
        assert d.class_name == det.names[d.class_id] and 0.02 < d.score <= 1


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
    model = detector.load("yolov2-tiny-voc-fastdsc", backend="ort", img_size=128)
    model(np.zeros((96, 128, 3), np.uint8))
    assert np.array([1e-310]) * 1.0 != 0.0
