"""Darknet ``.weights`` files: reader and writer (twins), byte-exact.

Layout (darknet ``save_weights``/``load_weights``): int32 major, minor, revision; then
``seen`` images as uint64 when ``major*10 + minor >= 2`` (and major, minor < 1000), else
uint32; then, for every [convolutional] in order, float32 little-endian:
``biases[n]`` (BN beta), and with batch_normalize ``scales[n]`` (gamma), ``rolling_mean[n]``,
``rolling_variance[n]``; then ``weights[n * c/groups * size * size]`` (OIHW).
"""
from __future__ import annotations

import os
from typing import Dict, NamedTuple, Tuple

import numpy as np

from ..errors import UserError
from ..models.params import conv_params
from ..models.spec import ModelSpec
from .atomic import atomic_write_bytes


class DarknetHeader(NamedTuple):
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_64bit(self) -> bool:
        return (self.major * 10 + self.minor) >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def nbytes(self) -> int:
        return 20 if self.seen_64bit else 16

    def pack(self) -> bytes:
        head = np.array([self.major, self.minor, self.revision], "<i4").tobytes()
        return head + np.array([self.seen], "<u8" if self.seen_64bit else "<u4").tobytes()


def _layout(spec: ModelSpec):
    """(state name, count) in file order; None name = biases darknet stores but we don't."""
    for c in conv_params(spec):
        if c.bn:
            yield f"{c.bn}.bias", c.cout
            yield f"{c.bn}.weight", c.cout
            yield f"{c.bn}.running_mean", c.cout
            yield f"{c.bn}.running_var", c.cout
        else:
            yield (f"{c.prefix}.bias" if c.has_bias else None), c.cout
        yield f"{c.prefix}.weight", int(np.prod(c.weight_shape))


def expected_floats(spec: ModelSpec) -> int:
    return sum(n for _, n in _layout(spec))


def read_weights(path: str, spec: ModelSpec, partial: bool = False
                 ) -> Tuple[DarknetHeader, Dict[str, np.ndarray]]:
    """Read a darknet weights file for ``spec``; sizes must match exactly, or with
    ``partial`` the file may hold only the first layers (darknet's ``.conv.23`` backbone
    files): whole layers are read and the rest is left out of the returned state."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such weights file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            raise UserError(f"{path}: truncated darknet weights ({size} bytes, no header)")
        major, minor, revision = (int(v) for v in np.frombuffer(head, "<i4"))
        probe = DarknetHeader(major, minor, revision)
        raw_seen = f.read(probe.nbytes - 12)
        if len(raw_seen) < probe.nbytes - 12:
            raise UserError(f"{path}: truncated darknet weights ({size} bytes, no header)")
        seen = int(np.frombuffer(raw_seen, "<u8" if probe.seen_64bit else "<u4")[0])
        header = DarknetHeader(major, minor, revision, seen)
        body = size - header.nbytes
        want = expected_floats(spec)
        have, rest = divmod(body, 4)
        if partial and not rest and 0 < have < want:
            want = _whole_layers_prefix(spec, have)
        if rest or have != want:
            what = "truncated" if have < want else "too large"
            raise UserError(f"{path}: {what}: holds {body} bytes of weights ({have} floats"
                            f"{' + %d bytes' % rest if rest else ''}) but cfg {spec.name} needs "
                            f"{want} floats ({want * 4} bytes); wrong cfg for these weights?")
        data = np.frombuffer(f.read(), "<f4")
    state: Dict[str, np.ndarray] = {}
    shapes = {f"{c.prefix}.weight": c.weight_shape for c in conv_params(spec)}
    pos = 0
    for name, n in _layout(spec):
        if pos >= len(data):
            break
        chunk = data[pos:pos + n]
        pos += n
        if name is None:
            if np.any(chunk != 0):
                raise UserError(f"{path}: nonzero biases where {spec.name} has none")
            continue
        state[name] = chunk.reshape(shapes.get(name, (n,))).astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise UserError(f"{path}: weights contain NaN or infinity")
    return header, state


def _whole_layers_prefix(spec: ModelSpec, floats: int) -> int:
    """``floats`` if it ends exactly after some conv layer of ``spec``, else the full count
    (so a file cut inside a layer fails the size check as truncated)."""
    total = 0
    for c in conv_params(spec):
        total += (4 if c.bn else 1) * c.cout + int(np.prod(c.weight_shape))
        if total == floats:
            return floats
    return total


def weights_bytes(spec: ModelSpec, state: Dict[str, np.ndarray],
                  header: DarknetHeader = DarknetHeader()) -> bytes:
    parts = [header.pack()]
    for name, n in _layout(spec):
        arr = np.zeros(n, "<f4") if name is None else np.asarray(state[name], "<f4").reshape(-1)
        if arr.size != n:
            raise ValueError(f"{name}: {arr.size} values, darknet layout needs {n}")
        parts.append(arr.tobytes())
    return b"".join(parts)


def write_weights(path: str, spec: ModelSpec, state: Dict[str, np.ndarray],
                  header: DarknetHeader = DarknetHeader()) -> None:
    atomic_write_bytes(path, weights_bytes(spec, state, header))
