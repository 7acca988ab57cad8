"""Depth-wise Decomposition (He et al., arXiv 1910.09455): refit decoupled layers on real
activations so that each converted layer reproduces the ORIGINAL network's output there.

Two activation streams run side by side over the calibration images, one converted layer at a
time: the original network (``xo``) and the converted network built so far (``xc``). For
converted layer L with original pre-BN output ``Y = conv_W(xo)``:

1. (``dw_pw``) data-aware kernels, per input channel c (the paper's GSVD step, written as a
   reduced-rank regression): with ``p``/``p'`` the KxK patches of channel c in ``xo``/``xc``,
   ``S' = E[p' p'^T] = L L^T`` and ``X = E[p p'^T]``, the best map from the converted input to
   channel c's contribution is ``B = W_c X S'^-1``; its best rank-T version in the metric of
   the data is the truncated SVD of ``D B L`` (D = BN scale), giving kernels ``L^-T v_t`` and
   pointwise columns ``D^-1 u_t s_t``. With ``xc = xo`` and white patches this is ND. With
   per-channel terms (``LayerWeights.counts``) the layer's M = sum(counts) terms are dealt
   out again here, to the M largest of these data-aware singular values over all channels.
   (``pw_dw``) the same per output channel o, for the Cin x K*K slice, with the patch
   statistics modelled as separable (channel covariance x spatial covariance), so the metric
   is two small Cholesky factors and the truncated SVD gives pointwise rows and kernels.
2. Given the kernels, the pointwise weights (all Cout x M of them, M = Cin*T or sum(counts),
   with an intercept) are
   the exact minimiser of ``|Y - W Z - b|^2 + lambda |W - W0|^2`` over the depthwise outputs
   ``Z = dw(xc)``: ridge regression towards the step-1 weights, solved in closed form from
   normal equations accumulated in float64 over spatially subsampled positions.
   (``pw_dw``) given the pointwise rows, the grouped KxK kernels are refit the same way, one
   small problem (T*K*K + 1 unknowns) per output channel.
3. (``dw_pw``, ``als`` rounds, default 2) alternating least squares on the full Cin*K2 patch
   statistics of the converted input: the kernels of all input channels jointly given the
   pointwise weights (step 1 fits each channel alone; the joint system is (P^T D^2 P) x S
   blockwise, solved by block-preconditioned conjugate gradients when large), then the
   pointwise weights given the kernels (docs/convert.md gives what it gains). Layers with
   more than ``als_max_unknowns`` kernel unknowns skip it (the system is held in memory, 8
   bytes per entry).
4. The intercept ``b`` is folded into the BN running mean (or the bias) when the state is
   written; the converted stream then advances through the fitted layer, so the next layer is
   fitted on the inputs the converted network really produces (multi-layer: no accumulation).

Errors are measured on held-out calibration images (every image when nothing is fitted):
``err`` = the converted layer vs the original one on the original network's inputs,
``err_net`` = the converted network vs the original at this layer, both relative Frobenius
errors of the pre-BN output over all positions; ``err_nd`` = ``err`` of the ND weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..models.spec import ModelSpec
from .decouple import (LayerPlan, LayerWeights, bn_scale, channel_counts, gather_index,
                       slice_factors, term_index)


@dataclass
class RefineOptions:
    alpha: float = 1e-2            # ridge prior, in samples per unknown (see _alpha)
    batch: int = 8                 # images per forward batch
    min_samples: int = 16384       # positions per layer for the normal equations, at least
    samples_per_feature: int = 16  # ... and this many per unknown of one output channel
    holdout: int = 8               # 1 in ``holdout`` images measures, the rest fit
    stats_samples: int = 8192      # positions for the per-channel statistics of step 1
    eval_samples: int = 8192       # positions measuring each layer's own error (err, err_nd)
    gsvd: bool = True              # data-aware initial factors (step 1)
    als: int = 2                   # rounds of step 3 (dw_pw layers; 0: off)
    als_max_unknowns: int = 20000  # ... for layers with at most Cin*T*K*K kernel unknowns
    intercept: bool = True
    seed: int = 0
    progress: bool = True


@dataclass
class LayerStats:
    err: Optional[float] = None
    err_net: Optional[float] = None
    err_nd: Optional[float] = None
    samples: int = 0               # positions the fit used
    als: int = 0                   # rounds of step 3 run (0: not run on this layer)
    unknowns: int = 0              # unknowns per output channel of the fit

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def split_images(n: int, fit: bool, holdout: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(fit indices, eval indices). Without fitting, every image measures; with one image,
    it does both."""
    idx = np.arange(n)
    if not fit:
        return idx[:0], idx
    if n < 2:
        return idx, idx
    n_eval = max(1, n // max(holdout, 2))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


class _Refiner:
    def __init__(self, spec: ModelSpec, state: Dict[str, np.ndarray], plans: List[LayerPlan],
                 weights: Dict[int, LayerWeights], opts: RefineOptions):
        import torch
        from ..models.blocks import MaxPoolDarknet, Route
        from ..models.yolov2 import YOLOv2, load_state
        self.torch = torch
        self.F = torch.nn.functional
        self.Route, self.MaxPool = Route, MaxPoolDarknet
        self.spec, self.state, self.opts = spec, state, opts
        self.plans = {p.index: p for p in plans if p.action == "convert"}
        self.weights = weights
        self.model = load_state(YOLOv2(spec, pointwise="conv"), state).eval()
        self.model = self.model.to(memory_format=torch.channels_last)
        self.keep = set(self.model.keep)
        self.last_use: Dict[int, int] = {}
        for i, m in enumerate(self.model.layers):
            if isinstance(m, Route):
                for j in m.sources:
                    self.last_use[j] = max(self.last_use.get(j, -1), i)
        self.nd = {i: (torch.from_numpy(w.dw.copy()), torch.from_numpy(w.pw.copy()),
                       None if w.counts is None else w.counts.copy())
                   for i, w in weights.items()}

    # ---- helpers ------------------------------------------------------------------------
    def _cl(self, t):
        return t.contiguous(memory_format=self.torch.channels_last) if t.dim() == 4 else t

    def _index(self, counts):
        """Gather index (LongTensor) of per-channel ``counts``; None for a uniform T."""
        return None if counts is None else self.torch.from_numpy(gather_index(counts))

    def depthwise(self, x, dw, stride: int, pad: int, counts=None):
        """The depthwise step of a dw_pw block (with the channel gather of per-channel
        terms)."""
        index = self._index(counts)
        if index is not None:
            x = x.index_select(1, index)
        return self.F.conv2d(x, self._cl(dw), None, stride, pad, 1, x.shape[1])

    def run(self, x, kept: dict, start: int, stop: int):
        """Layers [start, stop) of the original model (unconverted layers are shared)."""
        for i in range(start, stop):
            m = self.model.layers[i]
            if isinstance(m, self.Route):
                x = m(kept)
            elif isinstance(m, self.MaxPool) and m.size == m.stride \
                    and x.shape[-1] % m.size == 0 and x.shape[-2] % m.size == 0:
                x = self.F.max_pool2d(x, m.size, m.stride)   # darknet's padding is unused
            else:
                x = m(x)
            if i in self.keep:
                kept[i] = x
            for j in [j for j in kept if self.last_use.get(j, -1) <= i]:
                del kept[j]
        return x

    def finish(self, i: int, y, kept: dict, stop: int):
        """BN + activation of layer i on its pre-BN output, then layers (i, stop)."""
        m = self.model.layers[i]
        x = m.act(m.bn(y))
        if i in self.keep:
            kept[i] = x
        return self.run(x, kept, i + 1, stop)

    def block(self, i: int, x, dw=None, pw=None, with_shift: bool = True):
        """Pre-BN output of converted layer i (its current weights unless dw/pw given)."""
        torch, F = self.torch, self.F
        lw = self.weights[i]
        dw = torch.from_numpy(lw.dw) if dw is None else dw
        pw = torch.from_numpy(lw.pw) if pw is None else pw
        bias = None if lw.bias is None else torch.from_numpy(lw.bias)
        if lw.order == "dw_pw":
            y = F.conv2d(self.depthwise(x, dw, lw.stride, lw.pad, lw.counts), self._cl(pw), bias)
        else:
            y = F.conv2d(F.conv2d(x, self._cl(pw)), self._cl(dw), bias, lw.stride, lw.pad, 1,
                         pw.shape[0] // dw.shape[1])
        if with_shift and lw.shift is not None:
            y = y + torch.from_numpy(lw.shift.astype(np.float32)).view(1, -1, 1, 1)
        return y

    def block_at(self, i: int, pc, dw=None, pw=None, with_shift: bool = True, counts="own"):
        """Pre-BN output of converted layer i from input patches (N, Cin, K2) -> (N, Cout),
        i.e. ``block`` at chosen positions only (``counts``: of ``dw``/``pw`` when given)."""
        torch = self.torch
        lw = self.weights[i]
        t, k2 = lw.terms, lw.size ** 2
        dw = torch.from_numpy(lw.dw) if dw is None else dw
        pw = torch.from_numpy(lw.pw) if pw is None else pw
        counts = lw.counts if isinstance(counts, str) else counts
        if lw.order == "dw_pw" and counts is not None:
            kern = dw.reshape(-1, k2)                                      # (M, K2)
            index = self._index(counts)
            z = torch.cat([(c.index_select(1, index) * kern).sum(-1)
                           for c in pc.split(1024)]) if len(pc) else pc.new_zeros(0, len(kern))
            y = z @ pw.reshape(pw.shape[0], -1).t()
        elif lw.order == "dw_pw":
            kern = dw.reshape(-1, t, k2)                                   # (Cin, T, K2)
            z = torch.bmm(pc.permute(1, 0, 2).contiguous(), kern.transpose(1, 2))
            y = z.permute(1, 0, 2).reshape(pc.shape[0], -1) @ pw.reshape(pw.shape[0], -1).t()
        else:
            cout = dw.shape[0]
            mid = pc.transpose(1, 2) @ pw.reshape(cout * t, -1).t()        # (N, K2, Cout*T)
            mid = mid.reshape(-1, k2, cout, t)
            y = torch.einsum("nkot,otk->no", mid, dw.reshape(cout, t, k2))
        if lw.bias is not None:
            y = y + torch.from_numpy(lw.bias)
        if with_shift and lw.shift is not None:
            y = y + torch.from_numpy(lw.shift.astype(np.float32))
        return y

    def positions(self, i: int, b: int, n_img: int, hw: int, per_image: int):
        """Random distinct output positions per image (B, P), in random order (so any prefix
        is a random subset)."""
        rng = np.random.default_rng([self.opts.seed, i, b])
        p = min(per_image, hw)
        return np.stack([rng.permutation(hw)[:p] for _ in range(n_img)])

    def patches(self, x, pos: np.ndarray, lw: LayerWeights, out_w: int):
        """KxK input patches at output positions ``pos`` (B, P) -> (B*P, C, K*K), in one
        gather."""
        torch = self.torch
        k, s, p = lw.size, lw.stride, lw.pad
        xp = self.F.pad(x, (p, p, p, p)) if p else x
        pos_t = torch.from_numpy(pos)
        d = torch.arange(k)
        dy, dx = d.repeat_interleave(k), d.repeat(k)                      # tap order dy*k+dx
        iy = (pos_t // out_w * s).unsqueeze(-1) + dy
        ix = (pos_t % out_w * s).unsqueeze(-1) + dx
        bi = torch.arange(x.shape[0]).view(-1, 1, 1).expand_as(iy)
        g = xp[bi, :, iy, ix]                                              # (B, P, K2, C)
        return g.reshape(-1, k * k, x.shape[1]).transpose(1, 2)

    @staticmethod
    def at(y, pos: np.ndarray, out_w: int):
        """Output values at positions (B, P) -> (B*P, C)."""
        import torch
        pos_t = torch.from_numpy(pos)
        bi = torch.arange(y.shape[0]).view(-1, 1).expand_as(pos_t)
        return y[bi, :, pos_t // out_w, pos_t % out_w].reshape(-1, y.shape[1])

    # ---- the fit ------------------------------------------------------------------------
    def gsvd_init(self, i: int, sxx, sxy) -> None:
        """Step 1 for a dw_pw layer from per-channel patch statistics (float64 numpy). With
        per-channel terms, the layer's middle channels are reallocated among its input
        channels by these data-aware singular values (same total, so the same FLOPs)."""
        lw = self.weights[i]
        t, k2 = lw.terms, lw.size ** 2
        w = self.state[f"layers.{i}.conv.weight"].astype(np.float64)
        cout, cin = w.shape[0], w.shape[1]
        ws = w.reshape(cout, cin, k2).transpose(1, 0, 2)                 # (Cin, Cout, K2)
        jitter = 1e-6 * max(float(np.trace(sxx, axis1=1, axis2=2).mean()) / k2, 1e-30)
        s = sxx + jitter * np.eye(k2)[None]
        chol = np.linalg.cholesky(s)                                       # S' = L L^T
        b = ws @ np.linalg.solve(s, sxy.transpose(0, 2, 1)).transpose(0, 2, 1)   # W_c X S'^-1
        scale = bn_scale(self.state, f"layers.{i}.bn", cout)
        f = slice_factors(scale[None, :, None] * b @ chol)
        if lw.counts is not None:
            counts = channel_counts(f.sq, int(lw.counts.sum()))
            src, tix = gather_index(counts), term_index(counts)
            kern = np.linalg.solve(chol.transpose(0, 2, 1), f.v)[src, :, tix]   # (M, K2)
            us = f.us(k2)[src, :, tix] / scale[None, :]                      # (M, Cout)
            lw.counts, lw.terms = counts, int(counts.max())
            lw.dw = kern.reshape(-1, 1, lw.size, lw.size).astype(np.float32)
            lw.pw = us.T.reshape(cout, -1, 1, 1).astype(np.float32)
            return
        kern = np.linalg.solve(chol.transpose(0, 2, 1), f.v[:, :, :t])    # L^-T v_t (Cin,K2,T)
        us = f.us(t) / scale[None, :, None]                        # (Cin, Cout, T)
        lw.dw = kern.transpose(0, 2, 1).reshape(cin * t, 1, lw.size, lw.size).astype(np.float32)
        lw.pw = us.transpose(1, 0, 2).reshape(cout, cin * t, 1, 1).astype(np.float32)

    def kron_init(self, i: int, scc, xcc, skk, xkk) -> None:
        """Step 1 for a pw_dw layer: per output channel o, the best rank-T approximation of
        the map from the converted patch (Cin x K2) to y_o, in the metric of a separable
        (channel x spatial) model of the patch statistics: ``S_C``/``X_C`` channel
        (co)variances at a pixel, ``S_K``/``X_K`` spatial ones averaged over channels."""
        lw = self.weights[i]
        t, k2 = lw.terms, lw.size ** 2
        w = self.state[f"layers.{i}.conv.weight"].astype(np.float64)
        cout, cin = w.shape[0], w.shape[1]
        norm = max(float(np.trace(skk)) / k2, 1e-30)
        skk, xkk = skk / norm, xkk / norm
        jit_c = 1e-6 * max(float(np.trace(scc)) / cin, 1e-30)
        scc = scc + jit_c * np.eye(cin)
        skk = skk + 1e-6 * np.eye(k2)
        lc, lk = np.linalg.cholesky(scc), np.linalg.cholesky(skk)
        left = lc.T @ np.linalg.solve(scc, xcc)                            # L_C^T S_C^-1 X_C
        right = np.linalg.solve(skk, xkk).T @ lk                           # X_K^T S_K^-1 L_K
        # A_o = left @ W_o @ right for every o, as two plain GEMMs
        a = left @ w.reshape(cout, cin, k2).transpose(1, 0, 2).reshape(cin, cout * k2)
        a = a.reshape(cin, cout, k2).transpose(1, 0, 2).reshape(cout * cin, k2) @ right
        f = slice_factors(a.reshape(cout, cin, k2))
        pw = np.linalg.solve(lc.T, f.us(t).transpose(1, 0, 2).reshape(cin, -1))
        pw = pw.reshape(cin, cout, t).transpose(1, 2, 0)                   # (Cout, T, Cin)
        kern = np.linalg.solve(lk.T[None], f.v[:, :, :t])                  # (Cout, K2, T)
        lw.pw = pw.reshape(cout * t, cin, 1, 1).astype(np.float32)
        lw.dw = kern.transpose(0, 2, 1).reshape(cout, t, lw.size, lw.size).astype(np.float32)

    def features(self, i: int, xc, pos: np.ndarray, out_w: int):
        """Regression features of layer i at positions ``pos`` of its converted input ``xc``:
        dw_pw -> (N, Cin*T [+1]) the depthwise outputs; pw_dw -> (N, Cout, T*K2 [+1]) the KxK
        patches of the pointwise outputs. The convs run on the whole map (cheaper than per
        patch); zero padding commutes with the bias-free pointwise step."""
        torch, F = self.torch, self.F
        lw = self.weights[i]
        t, k2 = lw.terms, lw.size ** 2
        if lw.order == "dw_pw":
            z = self.at(self.depthwise(xc, torch.from_numpy(lw.dw), lw.stride, lw.pad,
                                       lw.counts), pos, out_w)
        else:
            mid = F.conv2d(xc, self._cl(torch.from_numpy(lw.pw)))
            mp = self.patches(mid, pos, lw, out_w)                         # (N, Cout*T, K2)
            z = mp.reshape(mp.shape[0], -1, t * k2)
        if self.opts.intercept:
            ones = torch.ones(z.shape[:-1] + (1,), dtype=z.dtype)
            z = torch.cat([z, ones], -1)
        return z

    def _alpha(self, unknowns: int, n: int) -> float:
        """Ridge strength relative to the data term: a prior worth ``alpha`` samples per
        unknown, so it fades as the data grows (clamped to [1e-6, 1])."""
        return min(max(self.opts.alpha * unknowns / max(n, 1), 1e-6), 1.0)

    def solve(self, i: int, gram, rhs, n: int) -> None:
        """Ridge towards the current weights: (G + lam I') w = r + lam w0."""
        torch = self.torch
        lw = self.weights[i]
        t, k2 = lw.terms, lw.size ** 2
        ic = 1 if self.opts.intercept else 0
        if lw.order == "dw_pw":
            cout = lw.pw.shape[0]
            w0 = torch.from_numpy(lw.pw.reshape(cout, -1).T.astype(np.float64))   # (F, Cout)
            f = w0.shape[0]
            if ic:
                w0 = torch.cat([w0, torch.zeros(1, cout, dtype=torch.float64)])
            lam = self._alpha(f + ic, n) * float(torch.diagonal(gram)[:f].mean()) + 1e-12
            reg = torch.ones(f + ic, dtype=torch.float64) * lam
            if ic:
                reg[-1] = 0.0
            a = gram + torch.diag(reg)
            x = _spd_solve(torch, a, rhs + reg[:, None] * w0)              # (F+ic, Cout)
            lw.pw = x[:f].T.contiguous().numpy().reshape(cout, f, 1, 1).astype(np.float32)
            lw.shift = x[f].numpy().copy() if ic else None
        else:
            cout = lw.dw.shape[0]
            f = t * k2
            w0 = torch.from_numpy(lw.dw.reshape(cout, f).astype(np.float64))
            if ic:
                w0 = torch.cat([w0, torch.zeros(cout, 1, dtype=torch.float64)], 1)
            diag = torch.diagonal(gram, dim1=1, dim2=2)[:, :f]
            lam = self._alpha(f + ic, n) * diag.mean(1) + 1e-12            # (Cout,)
            reg = lam[:, None].expand(cout, f + ic).clone()
            if ic:
                reg[:, -1] = 0.0
            a = gram + torch.diag_embed(reg)
            x = _spd_solve(torch, a, (rhs + reg * w0).unsqueeze(-1)).squeeze(-1)
            lw.dw = x[:, :f].contiguous().numpy().reshape(cout, t, lw.size, lw.size) \
                .astype(np.float32)
            lw.shift = x[:, f].numpy().copy() if ic else None

    def alternate(self, i: int, pxx, pyx, px, py, n: int) -> int:
        """Step 3 (``dw_pw``): alternating least squares on the layer's full patch statistics
        (``pxx`` = sum of p p^T over the fit positions' Cin*K2 patches, ``pyx`` = sum of
        y p^T, ``px``/``py`` = sums). Each round solves the kernels of ALL input channels
        jointly given the pointwise weights (step 1 fits each channel alone), then the
        pointwise weights given the kernels; both exactly (up to the solver tolerance), with
        the output errors weighted by the BN scale (what the next layer sees), each a ridge
        towards the current weights. Returns the rounds run."""
        torch = self.torch
        lw = self.weights[i]
        k2 = lw.size ** 2
        cout, mid = lw.pw.shape[0], lw.pw.shape[1]
        cin = px.shape[0] // k2
        counts = lw.counts if lw.counts is not None else np.full(cin, lw.terms)
        src = torch.from_numpy(gather_index(counts))
        m, my = px / n, py / n
        if self.opts.intercept:                   # the intercept is the centring
            sx, cyx = pxx / n - torch.outer(m, m), pyx / n - torch.outer(my, m)
        else:
            sx, cyx = pxx / n, pyx / n
        sx4, cyx = sx.reshape(cin, k2, cin, k2), cyx.reshape(cout, cin, k2)
        s2 = torch.from_numpy(bn_scale(self.state, f"layers.{i}.bn", cout)).double() \
            .pow(2).view(-1, 1)
        v = torch.from_numpy(lw.dw.reshape(mid, k2).astype(np.float64))
        p = torch.from_numpy(lw.pw.reshape(cout, mid).astype(np.float64))
        v, p = als_refit(torch, v, p, src, sx4, cyx, s2, self.opts.als)
        lw.dw = v.reshape(mid, 1, lw.size, lw.size).numpy().astype(np.float32)
        lw.pw = p.reshape(cout, mid, 1, 1).numpy().astype(np.float32)
        if self.opts.intercept:
            w = torch.zeros(cout, cin, k2, dtype=torch.float64)
            w.index_add_(1, src, p[:, :, None] * v[None])
            lw.shift = (my - w.reshape(cout, -1) @ m).numpy().copy()
        return self.opts.als


ALS_RIDGE = 1e-4        # ridge of the alternating steps, relative to the mean diagonal


def als_refit(torch, v, p, src, sx4, cyx, s2, rounds: int, ridge: float = ALS_RIDGE):
    """Alternating least squares for a dw_pw block with M middle channels: kernels ``v``
    (M, K2) and pointwise weights ``p`` (Cout, M), float64, middle channel j reading input
    channel ``src[j]`` (channel-major, any number per input channel), minimising the weighted
    output error ``sum_o s2_o E[(y_o - sum_j p_oj v_j . x_src[j])^2]`` given the input patch
    covariance ``sx4`` (Cin, K2, Cin, K2) and the output-input cross-covariance ``cyx``
    (Cout, Cin, K2); ``s2``: the weights, shape (Cout, 1). Each step is a ridge towards the
    current value."""
    mid, k2 = v.shape
    cin = sx4.shape[0]
    sizes = (torch.bincount(src, minlength=cin) * k2).tolist()     # CG preconditioner blocks
    # flat index of (j, k) into the Cin*K2 patch
    ik = (src[:, None] * k2 + torch.arange(k2)[None, :]).reshape(-1)
    sxf = sx4.reshape(cin * k2, cin * k2)
    cyx_m = cyx.index_select(1, src)                                   # (Cout, M, K2)
    for _ in range(rounds):
        # kernels given pointwise: H[(j,k),(j',l)] = (P^T D^2 P)[j,j'] Sx[(src_j,k),(src_j',l)]
        h = sxf.index_select(0, ik).index_select(1, ik).reshape(mid, k2, mid, k2)
        h.mul_(((p * s2).t() @ p)[:, None, :, None])
        h = h.reshape(mid * k2, mid * k2)
        rhs = torch.einsum("oj,ojk->jk", p * s2, cyx_m).reshape(-1)
        lam = ridge * float(torch.diagonal(h).mean()) + 1e-30
        h.diagonal().add_(lam)
        v = block_pcg(torch, h, rhs + lam * v.reshape(-1), v.reshape(-1), sizes) \
            .reshape(mid, k2)
        del h
        # pointwise given kernels: one problem per output channel (the weights drop out)
        right = torch.einsum("ckjl,jl->ckj", sx4.index_select(2, src), v)   # (Cin, K2, M)
        gz = torch.einsum("jk,jkm->jm", v, right.index_select(0, src))
        del right
        rz = torch.einsum("jk,ojk->jo", v, cyx_m)
        lam = ridge * float(torch.diagonal(gz).mean()) + 1e-30
        gz.diagonal().add_(lam)
        p = _spd_solve(torch, gz, rz + lam * p.t()).t().contiguous()
    return v, p


def block_pcg(torch, a, b, x0, block, tol: float = 1e-6, iters: int = 80,
              direct: int = 4096):
    """Solve the SPD system ``a x = b``: by Cholesky up to ``direct`` unknowns, else by
    conjugate gradients from ``x0``, preconditioned by a's diagonal blocks (``block``: their
    size, or the list of consecutive block sizes; zeros are skipped) (each CG step lowers the
    quadratic's value, so a capped solve still improves on x0)."""
    if a.shape[0] <= direct:
        return _spd_solve(torch, a, b[:, None])[:, 0]
    sizes = [block] * (a.shape[0] // block) if isinstance(block, int) else \
        [s for s in block if s]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    groups = []                       # blocks of one size, factored and applied together
    for size in sorted(set(sizes)):
        first = torch.from_numpy(starts[np.asarray(sizes) == size])
        idx = (first[:, None] + torch.arange(size)[None, :])               # (nb, size)
        blocks = a[idx[:, :, None], idx[:, None, :]]                       # (nb, size, size)
        groups.append((idx.reshape(-1), idx.shape, torch.linalg.cholesky(blocks)))

    def prec(r):
        out = torch.empty_like(r)
        for flat, shape, chol in groups:
            out[flat] = torch.cholesky_solve(r[flat].reshape(shape + (1,)), chol).reshape(-1)
        return out

    x = x0.clone()
    r = b - a @ x
    z = prec(r)
    d = z.clone()
    rz = float(r @ z)
    stop = tol * float(b.norm())
    for _ in range(iters):
        if float(r.norm()) <= stop or rz <= 0.0:
            break
        ad = a @ d
        step = rz / float(d @ ad)
        x += step * d
        r -= step * ad
        z = prec(r)
        rz_new = float(r @ z)
        d = z + (rz_new / rz) * d
        rz = rz_new
    return x


def _sq(t) -> float:
    """Sum of squares, accumulated in float64."""
    import torch
    return float((t * t).sum(dtype=torch.float64))


def _spd_solve(torch, a, b):
    """Solve symmetric positive definite systems (batched), with a pseudo-inverse fallback."""
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info == 0).all()):
        return torch.cholesky_solve(b, chol)
    return torch.linalg.lstsq(a, b).solution


@dataclass
class _Layer:
    """Converted layer ``index`` in the pass: the streams then advance to ``stop`` (the next
    converted layer, or the end of the network for the ``last`` one)."""
    index: int
    stop: int
    last: bool
    cin: int
    cout: int
    out_w: int
    hw: int                         # output positions per image


@dataclass
class _Batches:
    """Calibration images in batches with their activation streams: per batch ``[xo, xc,
    kept_o, kept_c]``, the original and the converted network's activations (the same
    tensors until the first converted layer) and what each keeps for later routes."""
    idx: List[np.ndarray]
    streams: List[list]
    images: int


def _start(r: _Refiner, images: np.ndarray, idx: np.ndarray, first: int) -> _Batches:
    """Batches of ``images[idx]``, run up to the first converted layer ``first``."""
    torch = r.torch
    batch = r.opts.batch
    parts = [idx[j:j + batch] for j in range(0, len(idx), batch)]
    streams = []
    for part in parts:
        x = r._cl(torch.from_numpy(np.ascontiguousarray(images[part])))
        kept: dict = {}
        x = r.run(x, kept, 0, first)
        streams.append([x, x, kept, dict(kept)])
    return _Batches(parts, streams, len(idx))


def refine(spec: ModelSpec, state: Dict[str, np.ndarray], plans: List[LayerPlan],
           weights: Dict[int, LayerWeights], images: np.ndarray, fit: bool = True,
           options: Optional[RefineOptions] = None,
           split: Optional[Tuple[np.ndarray, np.ndarray]] = None
           ) -> Tuple[Dict[int, LayerStats], dict]:
    """Fit (``fit=True``, DD) or only measure (``fit=False``) the converted layers on
    calibration ``images`` [N, 3, S, S] (letterboxed, float32 in [0, 1]). ``weights`` are
    updated in place. ``split``: the (fit, measure) image indices of a fit (default:
    ``split_images``). Returns per-layer stats and a summary (images used, output error)."""
    import torch
    opts = options or RefineOptions()
    r = _Refiner(spec, state, plans, weights, opts)
    layers = sorted(r.plans)
    fit_idx, eval_idx = split_images(len(images), fit, opts.holdout, opts.seed) \
        if split is None or not fit else split
    size = images.shape[-1]
    shapes = spec.shapes(size)
    stats = {i: LayerStats() for i in layers}
    out_se = out_ss = 0.0
    bar = _progress(opts.progress, len(layers) + 1, "DD fit" if fit else "measure")
    with torch.inference_mode():
        fit_set = _start(r, images, fit_idx, layers[0])
        eval_set = _start(r, images, eval_idx, layers[0])
        bar.update(1)
        for li, i in enumerate(layers):
            last = li + 1 == len(layers)
            cout, out_h, out_w = shapes[i]
            layer = _Layer(i, len(spec.layers) if last else layers[li + 1], last,
                           shapes[i - 1][0] if i else spec.channels, cout, out_w, out_h * out_w)
            if fit and fit_set.idx:
                _fit_layer(r, layer, fit_set, stats[i])
            out_se, out_ss = _measure_layer(r, layer, eval_set, fit, stats[i], out_se, out_ss)
            bar.update(1)
            if stats[i].err is not None:
                bar.set_postfix_str(f"layer {i} err {stats[i].err:.4f}")
    bar.close()
    summary = {"images": int(len(images)), "fit_images": int(len(fit_idx)),
               "eval_images": int(len(eval_idx)), "img_size": int(size),
               "in_sample": bool(fit and len(images) < 2),
               "output_err": math.sqrt(out_se / out_ss) if out_ss > 0 else None}
    return stats, summary


def _fit_layer(r: _Refiner, layer: _Layer, fit_set: _Batches, stats: LayerStats) -> None:
    """Steps 1-3 for one converted layer on the fit batches: the initial factors from patch
    statistics, the ridge fit on sampled positions, the alternating refit. The original
    stream advances while the normal equations accumulate, the converted one after the fit
    (through the fitted layer)."""
    opts, lw, i = r.opts, r.weights[layer.index], layer.index
    unknowns = (lw.pw.shape[1] if lw.order == "dw_pw" else lw.terms * lw.size ** 2) \
        + int(opts.intercept)
    target = max(opts.min_samples, opts.samples_per_feature * unknowns)
    per_image = min(layer.hw, int(math.ceil(target / max(fit_set.images, 1))))
    pos = [r.positions(i, b, len(idx), layer.hw, per_image) for b, idx in enumerate(fit_set.idx)]
    if opts.gsvd:
        # per-channel statistics converge fast: a subset of positions
        sub = max(1, int(math.ceil(opts.stats_samples / max(fit_set.images, 1))))
        subset = [p[:, :sub] for p in pos]
        if lw.order == "dw_pw":
            r.gsvd_init(i, *_channel_stats(r, layer, fit_set, subset))
        else:
            r.kron_init(i, *_separable_stats(r, layer, fit_set, subset))
    als = opts.als > 0 and lw.order == "dw_pw" \
        and lw.pw.shape[1] * lw.size ** 2 <= opts.als_max_unknowns
    gram, rhs, n, moments = _normal_equations(r, layer, fit_set, pos, als)
    r.solve(i, gram, rhs, n)
    del gram, rhs
    if moments is not None:
        stats.als = r.alternate(i, *moments, n)
        del moments
    stats.samples, stats.unknowns = n, unknowns
    if layer.last:
        fit_set.streams.clear()
        return
    for st in fit_set.streams:
        st[1] = r.finish(i, r.block(i, st[1]), st[3], layer.stop)


def _channel_stats(r: _Refiner, layer: _Layer, fit_set: _Batches, pos: List[np.ndarray]):
    """Step 1 statistics of a dw_pw layer: per input channel, the K2 x K2 second moments of
    the converted patches and their cross moments with the original ones (float64 numpy)."""
    torch, lw = r.torch, r.weights[layer.index]
    k2 = lw.size ** 2
    sxx = torch.zeros(layer.cin, k2, k2, dtype=torch.float64)
    sxy = torch.zeros(layer.cin, k2, k2, dtype=torch.float64)
    for b, st in enumerate(fit_set.streams):
        xo, xc = st[0], st[1]
        pc = r.patches(xc, pos[b], lw, layer.out_w).permute(1, 0, 2).contiguous()  # (C, n, K2)
        po = pc if xo is xc else r.patches(xo, pos[b], lw, layer.out_w) \
            .permute(1, 0, 2).contiguous()
        sxx += torch.bmm(pc.transpose(1, 2), pc)                           # (C, K2, K2)
        sxy += torch.bmm(po.transpose(1, 2), pc)
    return sxx.numpy(), sxy.numpy()


def _separable_stats(r: _Refiner, layer: _Layer, fit_set: _Batches, pos: List[np.ndarray]):
    """Step 1 statistics of a pw_dw layer: channel (co)variances at the centre pixel and
    spatial ones over all channels, of the converted patches and against the original ones."""
    torch, lw = r.torch, r.weights[layer.index]
    k2, cin = lw.size ** 2, layer.cin
    scc = torch.zeros(cin, cin, dtype=torch.float64)
    xcc = torch.zeros(cin, cin, dtype=torch.float64)
    skk = torch.zeros(k2, k2, dtype=torch.float64)
    xkk = torch.zeros(k2, k2, dtype=torch.float64)
    for b, st in enumerate(fit_set.streams):
        xo, xc = st[0], st[1]
        pc = r.patches(xc, pos[b], lw, layer.out_w)                        # (n, C, K2)
        po = pc if xo is xc else r.patches(xo, pos[b], lw, layer.out_w)
        cc, co = pc[:, :, k2 // 2], po[:, :, k2 // 2]                      # centre pixels
        scc += cc.t() @ cc
        xcc += cc.t() @ co
        kc, ko = pc.reshape(-1, k2), po.reshape(-1, k2)
        skk += kc.t() @ kc
        xkk += kc.t() @ ko
    return scc.numpy(), xcc.numpy(), skk.numpy(), xkk.numpy()


def _normal_equations(r: _Refiner, layer: _Layer, fit_set: _Batches, pos: List[np.ndarray],
                      als: bool):
    """(gram, rhs, samples, moments) of step 2 over the fit batches, in float64; ``moments``:
    the patch sums step 3 needs (``alternate``'s pxx, pyx, px, py), or None without ``als``.
    Each batch's original stream moves on to the next converted layer here."""
    torch, lw, i = r.torch, r.weights[layer.index], layer.index
    conv = r.model.layers[i].conv
    b0 = None if lw.bias is None else torch.from_numpy(lw.bias)
    gram = rhs = moments = None
    if als:
        f = layer.cin * lw.size ** 2
        moments = (torch.zeros(f, f, dtype=torch.float64),
                   torch.zeros(layer.cout, f, dtype=torch.float64),
                   torch.zeros(f, dtype=torch.float64),
                   torch.zeros(layer.cout, dtype=torch.float64))
    n = 0
    for b, st in enumerate(fit_set.streams):
        yo = conv(st[0])
        y = r.at(yo, pos[b], layer.out_w)
        if b0 is not None:
            y = y - b0
        g, h = _batch_equations(r, layer, st[1], pos[b], y)
        if gram is None:
            gram, rhs = g.double(), h.double()
        else:
            gram += g
            rhs += h
        del g, h
        if moments is not None:
            pc = r.patches(st[1], pos[b], lw, layer.out_w).reshape(y.shape[0], -1)
            moments[0].add_(pc.t() @ pc)          # float32 product, float64 sum
            moments[1].add_(y.t() @ pc)
            moments[2].add_(pc.sum(0, dtype=torch.float64))
            moments[3].add_(y.sum(0, dtype=torch.float64))
            del pc
        n += y.shape[0]
        if not layer.last:                        # the original stream moves on now
            st[0] = r.finish(i, yo, st[2], layer.stop)
        del yo
    return gram, rhs, n, moments


def _batch_equations(r: _Refiner, layer: _Layer, xc, pos: np.ndarray, y):
    """One batch's (Z^T Z, Z^T y) of step 2: one system for dw_pw, one per output channel
    for pw_dw."""
    torch, lw = r.torch, r.weights[layer.index]
    z = r.features(layer.index, xc, pos, layer.out_w)
    if lw.order == "dw_pw":
        return z.t() @ z, z.t() @ y
    zt = z.transpose(0, 1).contiguous()                                    # (Cout, N, F)
    return (torch.bmm(zt.transpose(1, 2), zt),
            torch.bmm(zt.transpose(1, 2), y.t().unsqueeze(-1)).squeeze(-1))


def _measure_layer(r: _Refiner, layer: _Layer, eval_set: _Batches, fit: bool,
                   stats: LayerStats, out_se: float, out_ss: float) -> Tuple[float, float]:
    """The layer's errors on the held-out batches, advancing both streams through it:
    ``err_net`` on every position (the converted stream is computed anyway), ``err`` and
    ``err_nd`` on sampled positions of the original input. Returns the network output's
    squared error and squared norm, accumulated at the last layer."""
    lw, i = r.weights[layer.index], layer.index
    conv = r.model.layers[i].conv
    se_l = se_n = se_nd = ss = ss_s = 0.0
    per_eval = min(layer.hw, int(math.ceil(r.opts.eval_samples / max(eval_set.images, 1))))
    for b, (idx, st) in enumerate(zip(eval_set.idx, eval_set.streams)):
        xo, xc = st[0], st[1]
        yo = conv(xo)
        yc = r.block(i, xc)
        ss += _sq(yo)
        se_n += _sq(yc - yo)
        pe = r.positions(i, 10 ** 6 + b, len(idx), layer.hw, per_eval)
        po = r.patches(xo, pe, lw, layer.out_w)
        ys = r.at(yo, pe, layer.out_w)
        ss_s += _sq(ys)
        se_l += _sq(r.block_at(i, po) - ys)
        if fit:
            dw, pw, counts = r.nd[i]
            se_nd += _sq(r.block_at(i, po, dw, pw, False, counts) - ys)
        del po, ys
        st[0] = r.finish(i, yo, st[2], layer.stop)
        st[1] = r.finish(i, yc, st[3], layer.stop)
        if layer.last:
            out_se += _sq(st[1] - st[0])
            out_ss += _sq(st[0])
    if ss > 0:
        stats.err_net = math.sqrt(se_n / ss)
    if ss_s > 0:
        stats.err = math.sqrt(se_l / ss_s)
        if fit:
            stats.err_nd = math.sqrt(se_nd / ss_s)
    return out_se, out_ss


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="layer", leave=False)
