"""Several frames through the network in one call: every runtime that batches gives each frame
what it gives that frame alone (raw output, device decode, detections): bit for bit where the
batch replays the single-frame kernels per slot (emu), to float rounding where the runtime
picks other kernels for a larger batch (torch)."""
import numpy as np
import pytest

from conftest import random_state
from detector.api import Detector, LoadedModel
from detector.engine.kernel_engine import DeviceInput, KernelEngine
from detector.engine.plan import lower
from detector.engine.runners import RUNNERS, make_runner
from detector.errors import ParamError
from detector.models.spec_yaml import load_spec
from stream_helpers import frame_image

SIZE = 96
MAX_BATCH = 3
# (backend, runner options): every runtime here that batches
CASES = [("ort", {}), ("emu", {}), pytest.param("emu", {"dtype": "fp16"}, marks=pytest.mark.slow),
         ("torch", {}), ("torch", {"precision": "bf16"})]


@pytest.fixture(scope="module")
def model():
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    return spec, random_state(spec, seed=7)


def frames():
    """Three frames of different sizes and aspect ratios (different letterboxes)."""
    return [frame_image(3, 160, 120), frame_image(9, 96, 200), frame_image(14, 300, 140)]


def build(model, backend, opts, max_batch, tmp_path):
    from detector.engine.runners import available_backends
    if backend not in available_backends():
        pytest.skip(f"{backend} is not available here")
    if opts.get("precision") == "bf16":
        from detector.engine.runners.torch_bf16 import bf16_supported
        if not bf16_supported():
            pytest.skip("no oneDNN bf16 convolutions on this CPU")
    spec, state = model
    m = LoadedModel(spec, state, spec.class_names(), "test")
    extra = {"cache_dir": str(tmp_path)} if backend == "ort" else {}
    runner = make_runner(backend, spec, state, lambda: lower(spec, state, SIZE, m.names), "cpu",
                         max_batch=max_batch, **opts, **extra)
    return Detector(m, runner, SIZE, conf=0.02)


def _arrays(out):
    return [np.array(a, copy=True) for a in (out if isinstance(out, tuple) else (out,))]


def assert_same(a, b, exact):
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def assert_same_detections(a, b, exact):
    if exact:
        assert a == b
        return
    assert len(a) == len(b)
    for da, db in zip(a, b):
        assert (da.class_id, da.class_name) == (db.class_id, db.class_name)
        assert abs(da.score - db.score) < 1e-4
        np.testing.assert_allclose(da.box, db.box, atol=0.05)


@pytest.mark.parametrize("backend,opts", CASES, ids=lambda c: str(c))
def test_batched_outputs_equal_the_frames_run_alone(model, backend, opts, tmp_path):
    one = build(model, backend, opts, 1, tmp_path)
    many = build(model, backend, opts, MAX_BATCH, tmp_path)
    exact = backend != "torch"
    assert (one.max_batch, many.max_batch) == (1, MAX_BATCH)
    assert many.runner.batches and many.runner.describe()["max_batch"] == MAX_BATCH
    alone = []
    for f in frames():
        blob, lb = one.preprocess(f)
        out = one.infer(blob)
        alone.append((_arrays(out), one.postprocess(out, lb)))
    for n in (MAX_BATCH, 2, 1):                  # a full batch, a partial one, one frame
        ins = [many.preprocess(f, slot=i) for i, f in enumerate(frames()[:n])]
        outs = many.infer_batch([x for x, _ in ins])
        assert len(outs) == n
        for (raw, dets), out, (_, lb) in zip(alone, outs, ins):
            for a, b in zip(_arrays(out), raw):
                assert_same(a, b, exact)
            assert dets
            assert_same_detections(many.postprocess(out, lb), dets, exact)
    # the single-frame path of the batching detector gives the same too
    blob, lb = many.preprocess(frames()[1])
    assert_same_detections(many.postprocess(many.infer(blob), lb), alone[1][1], exact)


@pytest.mark.parametrize("backend", ["ort", "torch"])
def test_blobs_from_anywhere_are_stacked(model, backend, tmp_path):
    many = build(model, backend, {}, MAX_BATCH, tmp_path)
    blobs = [np.array(many.preprocess(f)[0], copy=True) for f in frames()]
    stacked = [np.array(o, copy=True) for o in many.infer_batch(blobs)]   # reused buffers
    alone = [np.array(many.infer(b), copy=True) for b in blobs]
    for a, b in zip(stacked, alone):
        assert_same(a, b, backend != "torch")


def test_runners_declare_whether_they_batch(model, tmp_path):
    assert all(RUNNERS[n].batching for n in ("ort", "torch", "torch-bf16", "emu", "cuda"))
    d = build(model, "ort", {}, MAX_BATCH, tmp_path)
    with pytest.raises(ValueError, match="1 to 3"):
        d.infer_batch([d.preprocess(f, slot=0)[0] for f in frames() * 2])
    with pytest.raises(ValueError, match="slot 3"):
        d.preprocess(frames()[0], slot=3)
    spec, state = model
    with pytest.raises(ParamError, match="max_batch=0"):
        make_runner("ort", spec, state, lambda: lower(spec, state, SIZE), max_batch=0)


def test_kernel_engine_batch_slots(model):
    spec, state = model
    plan = lower(spec, state, SIZE)
    eng = KernelEngine(plan, backend="emu", max_batch=2)
    try:
        (a, _), (b, _) = (eng.preprocess_frame(f, slot=i) for i, f in enumerate(frames()[:2]))
        assert (a.slot, b.slot) == (0, 1) and isinstance(a, DeviceInput)
        raw = eng([a, b]).copy()
        boxes, scores = eng.decode()
        assert raw.shape[0] == 2 and boxes.shape[0] == 2 and scores.shape[0] == 2
        single = eng(b).copy()                   # slot 1 alone
        np.testing.assert_array_equal(single[0], raw[1])
        b_boxes, _ = eng.decode()
        np.testing.assert_array_equal(b_boxes, boxes[1])
        with pytest.raises(ValueError, match="slots 0 .. n-1"):
            eng([b, a])
        with pytest.raises(ValueError, match="slot 2"):
            eng.preprocess_frame(frames()[0], slot=2)
        blobs = np.random.default_rng(0).random((2, 3, SIZE, SIZE), np.float32)
        np.testing.assert_array_equal(eng(blobs)[1], eng(blobs[1:2])[0])
    finally:
        eng.close()
