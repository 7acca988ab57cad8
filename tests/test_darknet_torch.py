"""The torch model computes what darknet computes: the whole network, reorg's memory layout
and maxpool's padding, against an independent numpy re-statement of darknet's C code."""
import os

import numpy as np
import pytest

import darknet_reference as ref
from conftest import REPO, random_state
from detector.io.darknet_cfg import spec_from_cfg
from detector.io.darknet_weights import read_weights, write_weights

torch = pytest.importorskip("torch")
from detector.models.blocks import MaxPoolDarknet, Reorg  # noqa: E402
from detector.models.yolov2 import YOLOv2, load_state  # noqa: E402

MINI = os.path.join(REPO, "tests", "data", "mini-yolov2.cfg")


def test_torch_model_computes_what_darknet_computes(tmp_path):
    spec = spec_from_cfg(MINI)
    state = random_state(spec, seed=3)
    write_weights(str(tmp_path / "m.weights"), spec, state)
    _, state = read_weights(str(tmp_path / "m.weights"), spec)
    image = np.random.default_rng(1).uniform(0, 1, (3, 64, 64))
    want = ref.forward(spec, state, image)
    model = load_state(YOLOv2(spec), state).eval()
    with torch.no_grad():
        got = model(torch.from_numpy(image[None].astype(np.float32)))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_reorg_is_darknets_layout_not_space_to_depth():
    x = np.random.default_rng(0).normal(size=(16, 6, 6))
    got = Reorg(2)(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_array_equal(got, ref.reorg(x, 2))
    s2d = torch.nn.functional.pixel_unshuffle(torch.from_numpy(x)[None], 2)[0].numpy()
    assert not np.allclose(got, s2d)


def test_darknet_maxpool_size2_stride1_keeps_size_and_looks_right_down():
    x = np.random.default_rng(0).normal(size=(2, 5, 7))
    got = MaxPoolDarknet(2, 1)(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == (2, 5, 7)
    np.testing.assert_array_equal(got, ref.maxpool(x, 2, 1, 1))
    odd = MaxPoolDarknet(2, 2)(torch.from_numpy(x)[None])[0].numpy()   # 5x7 -> 3x4 in darknet
    np.testing.assert_array_equal(odd, ref.maxpool(x, 2, 2, 1))


@pytest.mark.parametrize("size,stride,h,w", [(2, 2, 8, 6), (2, 2, 8, 7), (2, 2, 2, 2),
                                             (3, 2, 8, 8), (2, 1, 4, 4)])
def test_darknet_maxpool_skips_unread_padding_with_the_same_values_and_gradients(size, stride, h, w):
    # even sizes at size 2 stride 2 skip the pad copy (no window reads it): same outputs and
    # the same gradients as darknet's padded pooling
    x = np.random.default_rng(1).normal(size=(3, h, w))
    pool = MaxPoolDarknet(size, stride)
    xt = torch.from_numpy(x)[None].requires_grad_()
    out = pool(xt)
    np.testing.assert_array_equal(out[0].detach().numpy(), ref.maxpool(x, size, stride, size - 1))
    padded = torch.from_numpy(x)[None].requires_grad_()
    ref_out = torch.nn.functional.max_pool2d(
        torch.nn.functional.pad(padded, pool.pads, value=float("-inf")), size, stride)
    g = torch.from_numpy(np.random.default_rng(2).normal(size=tuple(out.shape)))
    out.backward(g)
    ref_out.backward(g)
    np.testing.assert_array_equal(xt.grad.numpy(), padded.grad.numpy())
