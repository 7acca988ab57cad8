"""Network Decoupling and Depth-wise Decomposition (detector.convert)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convert_helpers import mini_spec, random_state, structured_weight, write_voc  # noqa: E402

from detector.convert import ConvertOptions, convert  # noqa: E402
from detector.convert.decouple import (block_flops, block_weights, bn_scale,  # noqa: E402
                                       channel_counts, counts_energy, energy_curve,
                                       gather_index, plan_layers, slice_factors, slices)
from detector.errors import ParamError, UserError  # noqa: E402
from detector.io.checkpoint import save_checkpoint  # noqa: E402
from detector.models.spec import FastDSC  # noqa: E402
from detector.models.yolov2 import YOLOv2, load_state  # noqa: E402


def convert_with(weights, method="nd", **fields):
    """``convert`` with these ConvertOptions fields."""
    return convert(ConvertOptions(weights, method, **fields))


def forward(spec, state, x):
    model = load_state(YOLOv2(spec), state).eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def save_mini(tmp_path, state=None, name="mini.safetensors"):
    spec = mini_spec()
    path = str(tmp_path / name)
    save_checkpoint(path, spec, state if state is not None else random_state(spec))
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return write_voc(str(tmp_path_factory.mktemp("voc")), n_train=16, n_val=2, size=80)


# ---- ND: exactness, energy, order --------------------------------------------------------

@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_full_terms_reproduce_the_network(tmp_path, order):
    """T = K*K in either order gives the regular network's outputs to float32 precision (the
    whole network: strided conv, route/reorg, a conv with bias instead of BN)."""
    src = save_mini(tmp_path)
    res = convert_with(src, "nd", terms=9, order=order, latency_runs=0, progress=False)
    converted = [i for i, layer in enumerate(res.spec.layers) if isinstance(layer, FastDSC)]
    assert converted == [2, 5, 9, 11]              # first conv and 1x1 convs stay
    assert all(res.spec.layers[i].order == order and res.spec.layers[i].multiplier == 9
               and not res.spec.layers[i].mid_bn and res.spec.layers[i].mid_act == "linear"
               for i in converted)
    spec = mini_spec()
    x = np.random.default_rng(1).random((2, 3, 64, 64), np.float32)
    want = forward(spec, random_state(spec), x)
    got = forward(res.spec, res.state, x)
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()


def _conv_err(w, approx, scale, x):
    """BN-weighted relative output error of a conv weight approximation on inputs x."""
    f = torch.nn.functional
    d = torch.from_numpy((scale[:, None, None, None] * (approx - w)).astype(np.float32))
    ref = torch.from_numpy((scale[:, None, None, None] * w).astype(np.float32))
    return float(f.conv2d(x, d, padding=1).norm() / f.conv2d(x, ref, padding=1).norm())


@pytest.mark.parametrize("kind", ["random", "structured"])
@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_error_falls_as_terms_grow(kind, order):
    cout, cin = 24, 16
    rng = np.random.default_rng(3)
    w = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32) if kind == "random" \
        else structured_weight(cout, cin)
    state = {"layers.0.bn.weight": rng.uniform(0.5, 2, cout).astype(np.float32),
             "layers.0.bn.running_var": rng.uniform(0.5, 2, cout).astype(np.float32)}
    scale = bn_scale(state, "layers.0.bn", cout)
    f = slice_factors(slices(w, order, scale))
    x = torch.from_numpy(rng.normal(size=(4, cin, 20, 20)).astype(np.float32))
    weight_errs, out_errs = [], []
    for t in range(1, 10):
        dw, pw = block_weights(f, order, t, scale, 3)
        approx = _compose(dw, pw, order, cout, cin, t)
        weight_errs.append(np.linalg.norm(scale[:, None, None, None] * (approx - w))
                           / np.linalg.norm(scale[:, None, None, None] * w))
        out_errs.append(_conv_err(w, approx, scale, x))
    energy = np.cumsum(f.sq.sum(0)) / f.sq.sum()
    assert np.allclose(weight_errs, np.sqrt(np.clip(1 - energy, 0, None)), atol=1e-5)
    assert all(b <= a + 1e-6 for a, b in zip(weight_errs, weight_errs[1:]))
    assert all(b <= a + 1e-4 for a, b in zip(out_errs, out_errs[1:]))
    assert out_errs[-1] < 1e-5 and out_errs[0] > 0.05
    if kind == "structured":                   # learned-like filters need few terms
        assert weight_errs[3] < 0.1


def _compose(dw, pw, order, cout, cin, t):
    """The regular (Cout, Cin, 3, 3) weight a decoupled block computes."""
    if order == "dw_pw":
        k = dw.reshape(cin, t, 9)
        p = pw.reshape(cout, cin, t)
        return np.einsum("oct,ctk->ock", p, k).reshape(cout, cin, 3, 3)
    p = pw.reshape(cout, t, cin)
    k = dw.reshape(cout, t, 9)
    return np.einsum("otc,otk->ock", p, k).reshape(cout, cin, 3, 3)


def test_energy_rule_and_order_choice():
    spec = mini_spec()
    state = random_state(spec)
    plans, _ = plan_layers(spec, state, energy=0.6)
    conv = [p for p in plans if p.action == "convert"]
    for p in conv:
        for c in p.candidates.values():
            assert c["energy"] >= 0.6 - 1e-9
        assert p.flops_after == min(c["flops"] for c in p.candidates.values())
        assert p.candidates[p.order]["terms"] == p.terms
    # with a fixed T at stride 1 the cheaper order follows from the shape: pw_dw iff
    # Cout < Cin; a strided layer keeps its pointwise step after the stride (dw_pw)
    plans, _ = plan_layers(spec, state, terms=2)
    orders = {p.index: p.order for p in plans if p.action == "convert"}
    assert orders == {2: "dw_pw", 5: "dw_pw", 9: "pw_dw", 11: "dw_pw"}
    kept = {p.index: p.reason for p in plans if p.action == "keep"}
    assert set(kept) == {0, 4, 13} and "first conv" in kept[0] and "1x1" in kept[4]


def test_terms_per_layer():
    spec = mini_spec()
    state = random_state(spec)
    plans, _ = plan_layers(spec, state, terms=[1, 3, 9, 2])
    conv = [p for p in plans if p.action == "convert"]
    assert [(p.index, p.terms) for p in conv] == [(2, 1), (5, 3), (9, 9), (11, 2)]
    for p in conv:          # the order is still the cheaper one for that layer's T
        assert p.flops_after == min(c["flops"] for c in p.candidates.values())
    with pytest.raises(UserError, match="4 convertible layers"):
        plan_layers(spec, state, terms=[2, 2])
    with pytest.raises(ParamError, match="terms=0"):
        plan_layers(spec, state, terms=[2, 0, 2, 2])


def test_channel_allocation_keeps_more_energy_at_the_same_flops():
    """Sharing a layer's terms among its input channels by singular value keeps each channel
    a prefix of its terms, uses exactly the uniform budget (so the same FLOPs), keeps at least
    the uniform energy (more when the channels differ), and its weights compose to the
    truncated weight whose error the energy predicts."""
    cout, cin, t = 24, 16, 3
    rng = np.random.default_rng(5)
    w = structured_weight(cout, cin) * rng.uniform(0.05, 2.0, (1, cin, 1, 1)).astype(np.float32)
    scale = np.ones(cout)
    f = slice_factors(slices(w, "dw_pw", scale))
    counts = channel_counts(f.sq, cin * t)
    assert counts.sum() == cin * t and counts.min() >= 0 and counts.max() <= 9
    assert len(set(counts.tolist())) > 1                 # the channels differ
    uniform = float(energy_curve(f.sq)[t - 1])
    kept = counts_energy(f.sq, counts)
    assert 1 - kept < 0.7 * (1 - uniform)                # the error left shrinks
    # the greedy choice is the best possible: no single swap of a kept and a dropped term helps
    keep = np.arange(9)[None, :] < counts[:, None]
    assert f.sq[keep].min() >= f.sq[~keep].max() - 1e-9
    dw, pw = block_weights(f, "dw_pw", int(counts.max()), scale, 3, counts)
    assert dw.shape == (cin * t, 1, 3, 3) and pw.shape == (cout, cin * t, 1, 1)
    approx = np.zeros((cout, cin, 9))
    np.add.at(approx, (slice(None), gather_index(counts)),
              pw.reshape(cout, -1, 1) * dw.reshape(1, -1, 9))
    err = np.linalg.norm(approx.reshape(w.shape) - w) / np.linalg.norm(w)
    assert abs(err - np.sqrt(1 - kept)) < 1e-4


def test_channel_allocation_energy_rule():
    """With --energy, a channel-allocated layer gets the fewest middle channels that keep the
    energy; its FLOPs follow from that count."""
    spec = mini_spec()
    state = random_state(spec)
    plans, factors = plan_layers(spec, state, energy=0.7, order="dw_pw")
    for p in (p for p in plans if p.action == "convert"):
        sq = factors[p.index].sq
        assert sum(p.counts) == p.mid and p.energy >= 0.7 - 1e-9
        assert counts_energy(sq, channel_counts(sq, p.mid - 1)) < 0.7
        assert p.flops_after == block_flops("dw_pw", p.cin, p.cout, 3, 1, p.in_hw, p.out_hw,
                                            p.mid)
    uniform, _ = plan_layers(spec, state, energy=0.7, order="dw_pw", allocate="layer")
    assert sum(p.flops_after for p in plans) < sum(p.flops_after for p in uniform)
    assert all(p.counts is None for p in uniform)


def test_bad_options_name_the_parameter(tmp_path):
    """Bad options are ParamErrors naming the ConvertOptions field (the CLI shows its flag),
    raised before anything is read."""
    src = save_mini(tmp_path)
    cases = [(dict(terms=2, energy=0.9), "terms", "exclusive with energy"),
             (dict(terms=0), "terms", "terms=0"), (dict(energy=1.5), "energy", "energy=1.5"),
             (dict(order="x"), "order", "order=x"), (dict(allocate="x"), "allocate", "x"),
             (dict(method="svd"), "method", "method=svd"),
             (dict(method="dd"), "calib", "method dd needs calibration images"),
             (dict(als=-1), "als", "als=-1"), (dict(latency_runs=-1), "latency_runs", "-1"),
             (dict(calib_images=0), "calib_images", "calib_images=0"),
             (dict(batch=0), "batch", "batch=0"), (dict(alpha=-1.0), "alpha", "alpha=-1.0"),
             (dict(out=str(tmp_path / "x.pt")), "out", "expected a .safetensors path"),
             (dict(weights=str(tmp_path / "none.safetensors"), img_size=33), "img_size", "33")]
    for fields, param, frag in cases:
        fields = dict(dict(weights=src, latency_runs=0, progress=False), **fields)
        with pytest.raises(ParamError, match=frag) as e:
            convert(ConvertOptions(**fields))
        assert e.value.param == param and "--" not in str(e.value), (fields, str(e.value))
    assert not os.path.exists(tmp_path / "x.pt")


# ---- DD ----------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_dd_fits_better_than_nd(tmp_path, calib, order):
    """On the same held-out calibration images, every DD-fitted layer's error is below the ND
    weights' error; fitting each layer on the converted network's own inputs (multi-layer)
    also keeps the accumulated error at every layer and at the output below ND's."""
    src = save_mini(tmp_path)
    path = str(tmp_path / f"dd_{order}.safetensors")
    common = dict(terms=2, order=order, calib=calib, calib_images=16, img_size=64,
                  latency_runs=0, progress=False, map_eval=False)
    nd = convert_with(src, "nd", **common)
    dd = convert_with(src, "dd", out=path, **common)
    rows = [r for r in dd.report["layers"] if r["action"] == "convert"]
    nd_rows = {r["index"]: r for r in nd.report["layers"] if r["action"] == "convert"}
    assert len(rows) == 4 and all(r["order"] == order for r in rows)
    for r in rows:
        assert r["err"] < r["err_nd"], r
        assert r["err_net"] < nd_rows[r["index"]]["err_net"], (r, nd_rows[r["index"]])
        assert r["samples"] > 0
    cal_nd, cal_dd = nd.report["calibration"], dd.report["calibration"]
    assert cal_dd["fit_images"] == 14 and cal_dd["eval_images"] == 2
    assert cal_nd["fit_images"] == 0 and cal_nd["eval_images"] == 16
    assert cal_dd["output_err"] < cal_nd["output_err"]
    # the saved checkpoint (fitted intercepts folded into BN / bias) is the fitted network
    import detector
    det = detector.load(path, backend="torch")
    assert det.spec.name == "mini-dd"
    x = np.random.default_rng(4).random((1, 3, 64, 64), np.float32)
    np.testing.assert_allclose(det.forward(x), forward(dd.spec, dd.state, x), rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(dd.state["layers.2.bn.running_mean"],
                           nd.state["layers.2.bn.running_mean"])


def test_dd_channel_allocation_beats_uniform_terms(tmp_path, calib):
    """At the same FLOPs, DD with per-channel terms (reallocated on the data) reproduces the
    original network better than with the same T for every input channel, and its
    checkpoint's blocks have the per-channel terms the report lists."""
    src = save_mini(tmp_path)
    common = dict(terms=2, order="dw_pw", calib=calib, calib_images=16, img_size=64,
                  latency_runs=0, progress=False, map_eval=False)
    out = str(tmp_path / "ch.safetensors")
    ch = convert_with(src, "dd", allocate="channel", out=out, **common)
    un = convert_with(src, "dd", allocate="layer", **common)
    assert ch.report["network"]["flops_after"] == un.report["network"]["flops_after"]
    assert ch.report["calibration"]["output_err"] < 0.9 * un.report["calibration"]["output_err"]
    rows = {r["index"]: r for r in ch.report["layers"] if r["action"] == "convert"}
    import detector
    spec = detector.load(out, backend="torch").spec
    for i, r in rows.items():
        assert sum(r["counts"]) == 2 * r["cin"]
        want = None if len(set(r["counts"])) == 1 else r["counts"]
        assert spec.layers[i].terms == want
    assert any(spec.layers[i].terms is not None for i in rows)


def test_per_channel_terms_in_specs(tmp_path):
    """A spec's per-channel terms are validated (one count per input channel, dw_pw only)
    with errors naming the key, and a darknet cfg, which cannot express the gather, is
    refused with a clear error."""
    from convert_helpers import MINI
    from detector.errors import ConfigError
    from detector.io.darknet_cfg import write_cfg
    from detector.models.spec_yaml import spec_from_dict
    data = json.loads(json.dumps(MINI))
    data["layers"][2] = {"type": "fastdsc", "filters": 16, "terms": [0, 3, 1, 2, 9, 0, 1, 4]}
    spec = spec_from_dict(data)
    assert spec.layers[2].mid_channels(8) == 20
    with pytest.raises(UserError, match="per-channel terms"):
        write_cfg(spec, str(tmp_path / "x.cfg"))
    for terms, frag in [([1, 2], r"layers\[2\]\.terms.*2 counts for 8"),
                        ([0] * 8, r"layers\[2\]\.terms"), ([10] + [1] * 7, r"0 to 9")]:
        data["layers"][2]["terms"] = terms
        with pytest.raises(ConfigError, match=frag):
            spec_from_dict(data)
    data["layers"][2].update(terms=[1] * 8, order="pw_dw")
    with pytest.raises(ConfigError, match="dw_pw"):
        spec_from_dict(data)


@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_patch_gather_matches_the_full_map(order):
    """DD's sampled features: a converted block evaluated from gathered KxK patches equals the
    full-map block at those positions (stride 2 and bias layers included)."""
    from detector.convert.refine import RefineOptions, _Refiner
    spec, state = mini_spec(), random_state(mini_spec())
    plans, f = plan_layers(spec, state, terms=2, order=order)
    from detector.convert.decouple import decouple
    weights = decouple(spec, state, plans, f)
    r = _Refiner(spec, state, plans, weights, RefineOptions())
    shapes = spec.shapes()
    for i, lw in weights.items():
        cout, oh, ow = shapes[i]
        x = torch.randn(2, shapes[i - 1][0], *shapes[i - 1][1:])
        x = x.contiguous(memory_format=torch.channels_last)
        pos = r.positions(i, 0, 2, oh * ow, min(7, oh * ow))
        full = r.at(r.block(i, x), pos, ow)
        got = r.block_at(i, r.patches(x, pos, lw, ow))
        assert torch.allclose(got, full, atol=1e-5), (i, float((got - full).abs().max()))


@pytest.mark.parametrize("allocate,gain", [("layer", 0.97), ("channel", 0.995)])
def test_alternating_refit_lowers_every_layer_error(tmp_path, calib, allocate, gain):
    """DD's alternating refit (kernels of all channels jointly, then pointwise) lowers each
    dw_pw layer's error on the held-out calibration images below the one-pass fit's, and the
    report says on which layers it ran (per-channel terms leave it less to gain)."""
    src = save_mini(tmp_path)
    common = dict(terms=2, order="dw_pw", calib=calib, calib_images=16, img_size=64,
                  latency_runs=0, progress=False, map_eval=False, allocate=allocate)
    one = {r["index"]: r for r in convert_with(src, "dd", als=0, **common).report["layers"]
           if r["action"] == "convert"}
    alt = {r["index"]: r for r in convert_with(src, "dd", als=2, **common).report["layers"]
           if r["action"] == "convert"}
    assert len(alt) == 4
    for i, r in alt.items():
        assert r["als"] == 2 and one[i]["als"] == 0
        assert r["err"] < gain * one[i]["err"], (i, r["err"], one[i]["err"])
    pw_dw = convert_with(src, "dd", als=2, **dict(common, order="pw_dw")).report["layers"]
    assert all(r["als"] == 0 for r in pw_dw if r["action"] == "convert")
    with pytest.raises(ParamError, match="als=-1"):
        convert_with(src, "dd", als=-1, **common)


@pytest.mark.parametrize("counts", [[2, 2, 2, 2, 2], [0, 4, 1, 3, 2]])
def test_als_refit_descends_on_the_weighted_objective(counts):
    """Each round of ``als_refit`` lowers the weighted quadratic it minimises, from the
    per-channel SVD start (``counts[c]`` terms of input channel c: uniform, and per-channel
    with a channel left out); a low-rank block cannot reach the full-rank target, so the error
    stays above zero."""
    from detector.convert.refine import als_refit
    g = torch.Generator().manual_seed(0)
    cin, cout, k2, n = 5, 7, 9, 4000
    mix = torch.randn(cin * k2, cin * k2, generator=g, dtype=torch.float64)
    x = torch.randn(n, cin * k2, generator=g, dtype=torch.float64) @ mix   # correlated patches
    w = torch.randn(cout, cin * k2, generator=g, dtype=torch.float64)
    y = x @ w.t()
    sx4 = (x.t() @ x / n).reshape(cin, k2, cin, k2)
    cyx = (y.t() @ x / n).reshape(cout, cin, k2)
    s2 = torch.rand(cout, generator=g, dtype=torch.float64).add(0.5).pow(2).view(-1, 1, 1)
    u, s, vh = torch.linalg.svd(w.reshape(cout, cin, k2).permute(1, 0, 2))  # per channel
    src = torch.repeat_interleave(torch.arange(cin), torch.tensor(counts))
    tix = torch.cat([torch.arange(c) for c in counts])
    v0 = vh[src, tix, :]                                                     # (M, K2)
    p0 = (u * s[:, None, :])[src, :, tix].t()                                # (Cout, M)

    def loss(v, p):
        approx = torch.zeros(cout, cin, k2, dtype=torch.float64)
        approx.index_add_(1, src, p[:, :, None] * v[None])
        approx = approx.reshape(cout, -1)
        return float((((y - x @ approx.t()) ** 2).mean(0) * s2.view(-1)).sum())

    values = [loss(v0, p0)]
    v, p = v0, p0
    for _ in range(4):
        v, p = als_refit(torch, v, p, src, sx4, cyx, s2.view(-1, 1), 1)
        values.append(loss(v, p))
    assert all(b < a for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.8 * values[0] and values[-1] > 0


def test_block_pcg_solves_like_cholesky():
    """The large-system solver agrees with a direct solve, and a solve capped at a few steps
    still lowers the quadratic from its starting point."""
    from detector.convert.refine import block_pcg
    g = torch.Generator().manual_seed(1)
    m = torch.randn(270, 400, generator=g, dtype=torch.float64)
    a = m @ m.t() / 400 + 0.05 * torch.eye(270, dtype=torch.float64)
    b = torch.randn(270, generator=g, dtype=torch.float64)
    x0 = torch.zeros(270, dtype=torch.float64)
    exact = torch.linalg.solve(a, b)
    got = block_pcg(torch, a, b, x0, 9, tol=1e-10, iters=1000, direct=0)
    assert float((got - exact).norm() / exact.norm()) < 1e-7

    def q(x):
        return float(0.5 * x @ a @ x - b @ x)

    capped = block_pcg(torch, a, b, x0, 9, iters=3, direct=0)
    assert q(exact) < q(capped) < q(x0)
    uneven = block_pcg(torch, a, b, x0, [27, 0, 9, 81, 18, 135], tol=1e-10, iters=1000,
                       direct=0)                           # per-channel blocks of varying size
    assert float((uneven - exact).norm() / exact.norm()) < 1e-7


# ---- I/O paths, backends, CLI ------------------------------------------------------------

def test_darknet_weights_convert(tmp_path):
    from detector.io.darknet_cfg import write_cfg
    from detector.io.darknet_weights import write_weights
    spec = mini_spec()
    state = random_state(spec, seed=5)
    write_cfg(spec, str(tmp_path / "mini.cfg"))
    write_weights(str(tmp_path / "mini.weights"), spec, state)
    out = str(tmp_path / "mini-nd.safetensors")
    res = convert_with(str(tmp_path / "mini.weights"), "nd", cfg=str(tmp_path / "mini.cfg"),
                       terms=9, out=out, latency_runs=0, progress=False)
    x = np.random.default_rng(2).random((1, 3, 64, 64), np.float32)
    want = forward(spec, state, x)
    from detector.io.checkpoint import load_checkpoint
    spec2, state2, names, meta = load_checkpoint(out)
    got = forward(spec2, state2, x)
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()
    assert json.loads(meta["convert"])["method"] == "nd"
    assert res.report["layers"][1]["action"] == "convert"


@pytest.mark.parametrize("order", ["auto", "pw_dw"])
def test_converted_checkpoint_runs_on_every_backend(tmp_path, order):
    """The converted checkpoint (depthwise with channel multiplier, grouped-sum KxK for
    pw_dw) gives the same raw outputs and detections on torch, ort and the kernel engine
    (emu, plus cuda where a GPU is present)."""
    import cv2
    import detector
    from detector.engine.runners import available_backends
    out = str(tmp_path / "tiny-nd.safetensors")
    res = convert_with("random:yolov2-tiny-voc", "nd", energy=0.8, order=order, out=out, img_size=96,
                       latency_runs=1 if order == "auto" else 0, progress=False)
    if order == "auto":
        lat = res.report["latency"]
        assert lat["before_ms"] > 0 and lat["after_ms"] > 0
    frame = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(frame, (80, 60), 30, (0, 200, 255), -1)
    runs = {}
    for backend in available_backends():
        det = detector.load(out, backend=backend, img_size=96, conf=0.05)
        blob, _ = det.preprocess(frame)
        runs[backend] = (det.forward(blob).copy(), det(frame))
    assert {"torch", "ort", "emu"} <= set(runs)
    raw_t, dets_t = runs["torch"]
    for backend, (raw, dets) in runs.items():
        assert np.abs(raw - raw_t).max() <= 1e-3 * max(1.0, np.abs(raw_t).max()), backend
        assert len(dets) == len(dets_t), backend
        for a, b in zip(dets, dets_t):
            assert a.class_id == b.class_id and abs(a.score - b.score) < 1e-3, backend
            assert np.allclose(a.box, b.box, atol=0.05), backend


def test_converted_checkpoint_fine_tunes(tmp_path, calib):
    """``detector train --weights converted.safetensors`` trains the decoupled network (its
    spec comes from the checkpoint) and writes a checkpoint of the same structure."""
    from conftest import run_cli
    from detector.io.checkpoint import load_checkpoint
    src = save_mini(tmp_path)
    conv = str(tmp_path / "dd.safetensors")
    convert_with(src, "dd", terms=2, calib=calib, calib_images=8, img_size=64, out=conv,
                 latency_runs=0, progress=False, map_eval=False)
    run = str(tmp_path / "run")
    proc = run_cli("train", "--weights", conv, "--data", calib, "--out", run, "--epochs", "1",
                   "--batch", "8", "--img-size", "64", "--no-multiscale", "--workers", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec, state, _, _ = load_checkpoint(os.path.join(run, "last.safetensors"))
    before = load_checkpoint(conv)[0]
    assert spec.to_dict()["layers"] == before.to_dict()["layers"]
    assert any(not np.array_equal(state[k], v) for k, v in load_checkpoint(conv)[1].items()
               if k.endswith("pw.weight"))


def test_report_flops_match_the_plan(tmp_path):
    from detector.engine.plan import lower
    spec = mini_spec()
    src = save_mini(tmp_path)
    res = convert_with(src, "nd", energy=0.7, latency_runs=0, progress=False)
    net = res.report["network"]
    assert net["flops_before"] == lower(spec, random_state(spec)).total_flops()
    assert net["flops_after"] == lower(res.spec, res.state).total_flops()
    assert net["params_after"] == sum(v.size for v in res.state.values())
    for row in res.report["layers"]:
        assert row["params_before"] > 0 and row["flops_before"] > 0


def test_cli_convert(tmp_path, calib):
    from conftest import assert_user_error, run_cli
    src = save_mini(tmp_path)
    out, rep = str(tmp_path / "o.safetensors"), str(tmp_path / "r.json")
    proc = run_cli("convert", "--weights", src, "--method", "dd", "--terms", "2", "--calib",
                   calib, "--calib-images", "8", "--img-size", "64", "--out", out, "--report",
                   rep, "--latency-runs", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout and os.path.isfile(out)
    with open(rep) as f:
        report = json.load(f)
    assert report["method"] == "dd" and report["latency"]["after_ms"] > 0
    for when, weights in (("before", src), ("after", out)):
        # the val split is evaluated in this process, as ``detector eval`` measures it
        assert 0.0 <= report["map"][when]["voc07_map"] <= 1.0, report["map"]
        js = str(tmp_path / f"eval_{when}.json")
        proc = run_cli("eval", "--weights", weights, "--data", calib, "--img-size", "64",
                       "--json", js)
        assert proc.returncode == 0, proc.stderr[-2000:]
        with open(js) as f:
            got = json.load(f)
        want = dict(report["map"][when])
        assert got.pop("fps") > 0 and want.pop("fps") > 0
        assert got == want, when
    assert {"err", "err_net", "err_nd", "terms", "order", "params_before", "flops_after"} \
        <= set(report["layers"][1])
    assert_user_error(run_cli("convert", "--weights", src, "--method", "dd", "--out", out),
                      "--calib")
    assert_user_error(run_cli("convert", "--weights", src, "--method", "nd", "--terms", "2,2",
                              "--out", out, "--latency-runs", "0"), "convertible layers")
    assert_user_error(run_cli("convert", "--weights", src, "--method", "nd", "--terms", "2,x",
                              "--out", out), "positive integer")
    proc = run_cli("convert", "--weights", src, "--method", "nd", "--terms", "1,3,9,2",
                   "--out", out, "--report", rep, "--latency-runs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(rep) as f:
        report = json.load(f)
    assert report["selection"] == "terms=1,3,9,2"
    assert [r["terms"] for r in report["layers"] if r["action"] == "convert"] == [1, 3, 9, 2]
    assert_user_error(run_cli("convert", "--weights", src, "--method", "nd", "--terms", "2",
                              "--energy", "0.9", "--out", out), "not allowed with")
    assert_user_error(run_cli("convert", "--weights", src, "--method", "dd", "--calib",
                              str(tmp_path / "none.yaml"), "--out", out), "none.yaml")
    # the library's parameter names, shown as the flags that set them
    assert_user_error(run_cli("convert", "--weights", src, "--method", "nd", "--out",
                              str(tmp_path / "o.pt")), "--out", "expected a .safetensors path")
    assert_user_error(run_cli("convert", "--weights", src, "--method", "nd", "--out", out,
                              "--latency-runs", "-1"), "--latency-runs -1")


def test_convert_does_not_import_the_command_line():
    """The conversion evaluates through the eval package in its own process: importing and
    running it loads no part of the CLI."""
    code = ("import sys\nimport detector.convert, detector.convert.measure\n"
            "print(sorted(m for m in sys.modules if m in ('detector.cli', 'detector.api')))")
    import subprocess
    import sys
    from conftest import REPO, cli_env
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", p.stdout


@pytest.mark.parametrize("order", ["dw_pw", "pw_dw"])
def test_converted_factors_are_balanced_without_changing_the_function(order):
    """DD's factors can come out 1000x apart in scale (a model that then does not fine-tune);
    the saved weights share each middle channel's scale evenly and compute the same."""
    from detector.convert.decouple import LayerWeights, balanced
    rng = np.random.default_rng(3)
    cin, cout, t = 6, 8, 2
    if order == "dw_pw":
        dw = rng.normal(size=(cin * t, 1, 3, 3)) * 1e-3
        pw = rng.normal(size=(cout, cin * t, 1, 1)) * 1e3
    else:
        pw = rng.normal(size=(cout * t, cin, 1, 1)) * 1e3
        dw = rng.normal(size=(cout, t, 3, 3)) * 1e-3
    lw = LayerWeights(order, t, 3, 1, 1, dw.astype(np.float32), pw.astype(np.float32), None)
    bdw, bpw = balanced(lw)
    x = torch.from_numpy(rng.random((1, cin, 10, 10), np.float32))
    f = torch.nn.functional

    def run(d, p):
        d = torch.from_numpy(np.asarray(d, np.float32))
        p = torch.from_numpy(np.asarray(p, np.float32))
        if order == "dw_pw":
            return f.conv2d(f.conv2d(x, d, padding=1, groups=cin), p)   # multiplier t
        return f.conv2d(f.conv2d(x, p), d, padding=1, groups=cout)

    want, got = run(dw, pw), run(bdw, bpw)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    first = (bdw.reshape(cin * t, -1) if order == "dw_pw" else bpw.reshape(cout * t, -1))
    second = (bpw.reshape(cout, cin * t).T if order == "dw_pw" else bdw.reshape(cout * t, -1))
    r1, r2 = np.sqrt((first ** 2).mean(1)), np.sqrt((second ** 2).mean(1))
    np.testing.assert_allclose(r1, r2, rtol=1e-4)
