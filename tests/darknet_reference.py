"""An independent float64 numpy re-statement of darknet's CPU forward pass, for tests.

Written from darknet's C semantics (not from our torch model): convolution with zero
padding, batch norm as ``(x - mean) / (sqrt(var) + .000001) * scale + bias``, leaky 0.1,
maxpool with ``-pad/2`` offset and out-of-range cells ignored, reorg through the literal
index arithmetic of ``reorg_cpu(..., forward=0, ...)``, route as concatenation.
"""
import numpy as np


def conv(x, w, b, stride, pad, groups):
    c, h, wd = x.shape
    f, cg, k, _ = w.shape
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    xp = np.zeros((c, h + 2 * pad, wd + 2 * pad))
    xp[:, pad:pad + h, pad:pad + wd] = x
    out = np.zeros((f, oh, ow))
    fg = f // groups
    for g in range(groups):
        cols = np.zeros((cg * k * k, oh * ow))
        row = 0
        for ci in range(g * cg, (g + 1) * cg):
            for ky in range(k):
                for kx in range(k):
                    cols[row] = xp[ci, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride].reshape(-1)
                    row += 1
        wg = w[g * fg:(g + 1) * fg].reshape(fg, -1)
        out[g * fg:(g + 1) * fg] = (wg @ cols).reshape(fg, oh, ow)
    return out


def batchnorm(x, scales, biases, mean, var):
    x = (x - mean[:, None, None]) / (np.sqrt(var[:, None, None]) + .000001)
    return x * scales[:, None, None] + biases[:, None, None]


def activate(x, act):
    if act == "leaky":
        return np.where(x > 0, x, .1 * x)
    if act == "relu":
        return np.maximum(x, 0)
    return x


def maxpool(x, size, stride, padding):
    c, h, w = x.shape
    oh = (h + padding - size) // stride + 1
    ow = (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = np.full((c, oh, ow), -np.inf)
    for i in range(oh):
        for j in range(ow):
            for n in range(size):
                for m in range(size):
                    y, xx = off + i * stride + n, off + j * stride + m
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, y, xx])
    return out


def reorg(x, stride):
    """darknet: reorg_cpu(net.input, l.w, l.h, l.c, l.batch, l.stride, 0, l.output)."""
    c, h, w = x.shape
    flat_in = x.reshape(-1)
    out = np.zeros(c * h * w)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * k)
                c2 = k % out_c
                offset = k // out_c
                w2 = i * stride + offset % stride
                h2 = j * stride + offset // stride
                out_index = w2 + w * stride * (h2 + h * stride * c2)
                out[in_index] = flat_in[out_index]
    return out.reshape(c * stride * stride, h // stride, w // stride)


def forward(spec, state, image_chw):
    """Run a spec read from a darknet cfg (Conv/MaxPool/Route/Reorg layers only)."""
    from detector.models.spec import Conv, MaxPool, Reorg, Route
    x = image_chw.astype(np.float64)
    outs = []
    for i, layer in enumerate(spec.layers):
        p = f"layers.{i}"
        if isinstance(layer, Conv):
            w = state[p + ".conv.weight"].astype(np.float64)
            y = conv(x, w, None, layer.stride, layer.padding, layer.groups)
            if layer.bn:
                y = batchnorm(y, state[p + ".bn.weight"], state[p + ".bn.bias"],
                              state[p + ".bn.running_mean"], state[p + ".bn.running_var"])
            else:
                y = y + state[p + ".conv.bias"][:, None, None]
            x = activate(y, layer.act)
        elif isinstance(layer, MaxPool):
            x = maxpool(x, layer.size, layer.stride, layer.pad)
        elif isinstance(layer, Reorg):
            x = reorg(x, layer.stride)
        elif isinstance(layer, Route):
            x = np.concatenate([outs[j if j >= 0 else i + j] for j in layer.layers], 0)
        outs.append(x)
    return x
