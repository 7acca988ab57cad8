"""``resize="darknet"``: darknet's letterbox_image bit for bit, in numpy (against a scalar
re-statement of darknet's resize_image) and in the preprocess kernel (the emulator under
AddressSanitizer; a real GPU where marked ``cuda``), and through every backend's Detector.
The darknet binary itself is the reference in test_darknet_reference.py."""
import numpy as np
import pytest

from detector.preprocess import (DARKNET_LUT, Preprocessor, darknet_resize, letterbox,
                                 letterbox_geometry)
from emu_sanitized import SanitizedEmu
from gpu_kernels import CudaKernels, gpu_available

F = np.float32


def resize_image_scalar(img, w, h):
    """darknet's resize_image (image.c) line by line on a CHW float32 image, with float32
    scalars: the reference the vectorised numpy is checked against."""
    c, ih, iw = img.shape
    part = np.zeros((c, ih, w), np.float32)
    out = np.zeros((c, h, w), np.float32)
    w_scale = F(iw - 1) / F(w - 1) if w > 1 else F(0)
    h_scale = F(ih - 1) / F(h - 1) if h > 1 else F(0)
    for k in range(c):
        for r in range(ih):
            for col in range(w):
                if col == w - 1 or iw == 1:
                    val = img[k, r, iw - 1]
                else:
                    sx = F(col) * w_scale
                    ix = int(sx)
                    dx = F(sx - F(ix))
                    val = F(F(F(1) - dx) * img[k, r, ix]) + F(dx * img[k, r, ix + 1])
                part[k, r, col] = val
    for k in range(c):
        for r in range(h):
            sy = F(r) * h_scale
            iy = int(sy)
            dy = F(sy - F(iy))
            for col in range(w):
                out[k, r, col] = F(F(1) - dy) * part[k, iy, col]
            if r == h - 1 or ih == 1:
                continue
            for col in range(w):
                out[k, r, col] = F(out[k, r, col] + F(dy * part[k, iy + 1, col]))
    return out


CASES = [(5, 7, 3, 11), (9, 6, 9, 6), (13, 4, 5, 2), (1, 8, 4, 8), (6, 1, 6, 3), (20, 17, 31, 29),
         (4, 4, 1, 3), (3, 9, 2, 1)]


@pytest.mark.parametrize("iw,ih,w,h", CASES)
def test_numpy_resize_is_darknets_resize_image(iw, ih, w, h):
    frame = np.random.default_rng(iw * 31 + ih).integers(0, 256, (ih, iw, 3), dtype=np.uint8)
    img = DARKNET_LUT[frame[:, :, ::-1]].transpose(2, 0, 1)        # darknet's RGB CHW floats
    want = resize_image_scalar(img, w, h)
    got = darknet_resize(frame, w, h)[:, :, ::-1].transpose(2, 0, 1)
    assert np.array_equal(got, want)


def test_pixel_values_are_darknets_double_division():
    v = np.arange(256)
    assert np.array_equal(DARKNET_LUT, np.array([np.float32(x / 255.0) for x in v]))
    assert np.array_equal(DARKNET_LUT, np.float32(v) / np.float32(255))   # what the kernel uses


def test_darknet_letterbox_geometry_fill_and_copy():
    frame = np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    blob, lb = letterbox(frame, 64, resize="darknet")
    assert (lb.new_w, lb.new_h, lb.left, lb.top) == (64, 32, 0, 16)
    assert (blob[0, :, :16] == 0.5).all() and (blob[0, :, 48:] == 0.5).all()
    same, _ = letterbox(frame[:64, :64], 64, resize="darknet")       # no resizing: a copy
    assert np.array_equal(same[0], DARKNET_LUT[frame[:64, :64, ::-1]].transpose(2, 0, 1))
    # the last row keeps only darknet's first term: (1 - d) * row, not the interpolation
    assert not np.allclose(blob, letterbox(frame, 64)[0], atol=2 / 255)


def test_preprocessor_switches_between_resizes_with_one_buffer():
    frame = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    pre = Preprocessor(96, resize="darknet")
    a = pre(frame)[0].copy()
    pre(np.zeros((160, 90, 3), np.uint8))
    assert np.array_equal(pre(frame)[0], a)
    with pytest.raises(ValueError, match="resize"):
        Preprocessor(96, resize="bicubic")


# ---- the preprocess kernel ----------------------------------------------------------------

@pytest.fixture(scope="module", params=["emu-asan", pytest.param("cuda", marks=pytest.mark.cuda)])
def kernels(request, tmp_path_factory):
    if request.param == "cuda":
        if not gpu_available():
            pytest.skip("no CUDA GPU with pycuda")
        worker = CudaKernels()
    else:
        worker = SanitizedEmu(str(tmp_path_factory.mktemp("emu")))
    yield worker
    worker.close()


def _input_plan(net):
    from detector.engine.plan import Plan
    return Plan(size=net, channels=3, buffers=[(3, net, net)], ops=[], output=0, tensors={},
                anchors=[(1.0, 1.0)], classes=1, names=["x"])


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("fw,fh,net", [(96, 64, 64), (50, 77, 64), (64, 64, 64), (200, 31, 64),
                                       (7, 5, 32), (451, 300, 96), (33, 1, 32), (1, 40, 32)])
def test_kernel_letterbox_is_darknets_bit_for_bit(kernels, dtype, fw, fh, net):
    frame = np.random.default_rng(fw * 1000 + fh).integers(0, 256, (fh, fw, 3), dtype=np.uint8)
    frame[: fh // 2, : fw // 3] = 200
    lb = letterbox_geometry(fw, fh, net, net)
    got = kernels.preprocess(_input_plan(net), frame, tuple(lb), dtype, resize="darknet")
    want = Preprocessor(net, resize="darknet")(frame)[0][0]
    if dtype == "fp16":
        want = want.astype(np.float16).astype(np.float32)
    assert got.shape == want.shape
    assert np.array_equal(got, want), int((got != want).sum())


# ---- every backend ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["ort", "torch", "emu"])
def test_every_backend_gives_the_same_detections_with_darknets_resize(backend):
    pytest.importorskip("torch") if backend == "torch" else None
    import detector
    frame = np.random.default_rng(3).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    ref = detector.load("random:yolov2-tiny-voc", backend="ort", img_size=96, conf=0.01,
                        resize="darknet")
    det = detector.load("random:yolov2-tiny-voc", backend=backend, img_size=96, conf=0.01,
                        resize="darknet")
    assert det.resize == "darknet"
    want, got = ref(frame), det(frame)
    assert len(got) == len(want) > 0
    for a, b in zip(sorted(got, key=lambda d: -d.score), sorted(want, key=lambda d: -d.score)):
        assert a.class_id == b.class_id and abs(a.score - b.score) < 1e-4
        assert np.abs(np.subtract(a.box, b.box)).max() < 1e-2


def test_the_default_resize_is_what_the_weights_expect(tmp_path):
    import detector
    from conftest import random_state
    from detector.io.darknet_cfg import write_cfg
    from detector.io.darknet_weights import write_weights
    from detector.models.spec_yaml import load_spec
    assert detector.load("random:yolov2-tiny-voc", backend="ort", img_size=64).resize == "opencv"
    spec = load_spec("yolov2-tiny-voc").replace(size=64)
    write_cfg(spec, str(tmp_path / "t.cfg"))
    write_weights(str(tmp_path / "t.weights"), spec, random_state(spec))
    det = detector.load(str(tmp_path / "t.weights"), cfg=str(tmp_path / "t.cfg"), backend="ort")
    assert det.resize == "darknet" and det.spec.resize == "darknet"
    det = detector.load(str(tmp_path / "t.weights"), cfg=str(tmp_path / "t.cfg"), backend="ort",
                        resize="opencv")
    assert det.resize == "opencv"
