"""Plan ops: one small immutable value per kind of op on a plan's numbered buffers.

An op is built from its fields (``Conv(name=..., src=0, dst=1, ...)``) or from the dict a
plan file stores (``op_from_dict``). The constructor refuses a field of the wrong type or
range, so an op that exists is well formed on its own. What needs the plan (do the buffers
exist, does the destination have the shape the op makes, do the weights fit) is
``op.check(buffers, tensors)``, which ``Plan.check`` calls for every op. ``to_dict`` gives
back the dict of the plan file: the same keys, in the same order, as lowering writes them.

The interpreters of a plan (ONNX graph, oneDNN runner, kernel launches, cost models) keep a
table op type -> handler and look an op up with ``handler``.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import ClassVar, Dict, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np

from ..errors import UserError
from ..models.spec import ACTIVATIONS

Shape = Tuple[int, int, int]
T = TypeVar("T")


class PlanError(UserError, ValueError):
    """A plan, or one of its ops, that is not what lowering makes. ``what`` says what is
    wrong, ``op`` which op (``op 3 (conv layers.2)``; empty for the plan itself)."""

    def __init__(self, what: str, op: str = ""):
        self.what, self.op = what, op
        super().__init__(f"plan {op}: {what}" if op else f"plan: {what}")


def op_label(kind: object, name: object) -> str:
    """``conv layers.2``: the op type and, when it has one, its name."""
    return f"{kind} {name}" if isinstance(name, str) and name else str(kind)


def _index(value, what: str, lo: int) -> int:
    """An int field (a buffer number, a size): an int (not a bool) of at least ``lo``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise PlanError(f"{what} = {value!r}")
    return int(value)


def _indices(values, what: str) -> Tuple[int, ...]:
    """A non-empty list (or tuple) of ints >= 0."""
    if not isinstance(values, (list, tuple)) or not values:
        raise PlanError(f"{what} = {values!r} (a non-empty list)")
    return tuple(_index(v, what, 0) for v in values)


@dataclass(frozen=True)
class Op:
    """The fields every op has: ``name`` (checkpoint prefix or ``layers.<i>``), ``dst`` (the
    buffer it writes, which no other op writes) and ``layer`` (the spec layer it comes from;
    None in hand-made plans). Subclasses add their own and say how they read buffers."""
    KIND: ClassVar[str] = ""
    INTS: ClassVar[Dict[str, int]] = {}          # int fields and their least value

    def __post_init__(self) -> None:
        try:
            if not isinstance(self.name, str):
                raise PlanError(f"name = {self.name!r}")
            if self.layer is not None:
                _index(self.layer, "layer", 0)
            for key, lo in self.INTS.items():
                object.__setattr__(self, key, _index(getattr(self, key), key, lo))
            self._validate()
            if not all(s < self.dst for s in self.sources):
                raise PlanError(f"buffers {list(self.sources)} -> {self.dst} out of order or range")
        except PlanError as e:
            raise PlanError(e.what, f"op ({op_label(self.KIND, self.name)})") from None

    def _validate(self) -> None:
        """Checks (and normalises) the fields the generic checks do not cover."""

    @property
    def label(self) -> str:
        return op_label(self.KIND, self.name)

    @property
    def sources(self) -> Tuple[int, ...]:
        """The buffers the op reads."""
        return (self.src,)

    def output_shape(self, buffers: Sequence[Shape]) -> Shape:
        """The shape the op makes from its sources (PlanError where it cannot apply)."""
        raise NotImplementedError

    def check(self, buffers: Sequence[Shape], tensors: Mapping[str, np.ndarray]) -> None:
        """Raises PlanError unless the op's buffers exist and its destination has the shape
        it makes (and, for a conv, its weights fit)."""
        if self.dst >= len(buffers):
            raise PlanError(f"buffers {list(self.sources)} -> {self.dst} out of order or range")
        want, have = self.output_shape(buffers), tuple(buffers[self.dst])
        if have != want:
            raise PlanError(f"output buffer {self.dst} is {list(have)}, the op makes "
                            f"{list(want)} from {list(buffers[self.sources[0]])}")

    def flops(self, buffers: Sequence[Shape]) -> int:
        """Multiply-adds x 2 (0 for data movement)."""
        return 0

    def to_dict(self) -> dict:
        """The op as a plan file stores it."""
        d = {"op": self.KIND, "name": self.name}
        if self.layer is not None:
            d["layer"] = self.layer
        for f in fields(self):
            if f.name not in ("name", "layer"):
                v = getattr(self, f.name)
                d[f.name] = list(v) if isinstance(v, tuple) else v
        return d


@dataclass(frozen=True)
class Conv(Op):
    """``weight`` [Cout, Cin/groups, k, k] and ``bias`` [Cout] (tensor names), BN folded;
    ``act``: leaky (0.1), linear or relu. ``kind`` tells pointwise / depthwise / grouped-sum
    / grouped / regular apart by the buffer shapes."""
    name: str
    src: int
    dst: int
    weight: str
    bias: str
    size: int
    stride: int
    pad: int
    groups: int
    act: str
    layer: Optional[int] = None
    KIND: ClassVar[str] = "conv"
    INTS: ClassVar[Dict[str, int]] = {"src": 0, "dst": 1, "size": 1, "stride": 1, "pad": 0,
                                      "groups": 1}

    def _validate(self) -> None:
        for key in ("weight", "bias"):
            if not isinstance(getattr(self, key), str):
                raise PlanError(f"{key} = {getattr(self, key)!r} (a tensor name)")
        if self.act not in ACTIVATIONS:
            raise PlanError(f"act = {self.act!r} (allowed: {', '.join(ACTIVATIONS)})")

    def kind(self, buffers: Sequence[Shape]) -> str:
        """``pointwise``, ``depthwise``, ``grouped_sum``, ``grouped`` or ``regular``."""
        cin, cout, g = buffers[self.src][0], buffers[self.dst][0], self.groups
        if g == 1:
            pointwise = self.size == 1 and self.stride == 1 and self.pad == 0
            return "pointwise" if pointwise else "regular"
        if g == cin and cout % cin == 0:
            return "depthwise"
        if g == cout and cin % cout == 0:
            return "grouped_sum"
        return "grouped"

    def output_shape(self, buffers: Sequence[Shape]) -> Shape:
        (c, h, w), co = buffers[self.src], buffers[self.dst][0]
        if c % self.groups or co % self.groups:
            raise PlanError(f"groups {self.groups} do not divide {c} input and {co} output "
                            "channels")
        k, s, p = self.size, self.stride, self.pad
        return co, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def check(self, buffers: Sequence[Shape], tensors: Mapping[str, np.ndarray]) -> None:
        super().check(buffers, tensors)
        cout, cin = buffers[self.dst][0], buffers[self.src][0]
        want = (cout, cin // self.groups, self.size, self.size)
        w, b = tensors.get(self.weight), tensors.get(self.bias)
        if w is None or tuple(w.shape) != want or b is None or tuple(b.shape) != (cout,):
            raise PlanError(f"weight must be {want} and bias ({cout},)")

    def flops(self, buffers: Sequence[Shape]) -> int:
        cout, h, w = buffers[self.dst]
        cin = buffers[self.src][0]
        return 2 * cout * h * w * (cin // self.groups) * self.size ** 2


@dataclass(frozen=True)
class MaxPool(Op):
    """Darknet's max pool: ``pad_before`` + ``pad_after`` extra rows and columns that never
    win the maximum."""
    name: str
    src: int
    dst: int
    size: int
    stride: int
    pad_before: int
    pad_after: int
    layer: Optional[int] = None
    KIND: ClassVar[str] = "maxpool"
    INTS: ClassVar[Dict[str, int]] = {"src": 0, "dst": 1, "size": 1, "stride": 1,
                                      "pad_before": 0, "pad_after": 0}

    def output_shape(self, buffers: Sequence[Shape]) -> Shape:
        c, h, w = buffers[self.src]
        pad, k, s = self.pad_before + self.pad_after, self.size, self.stride
        return c, (h + pad - k) // s + 1, (w + pad - k) // s + 1


@dataclass(frozen=True)
class Reorg(Op):
    """Darknet's reorg (models/blocks.Reorg): C x H x W read as (C/s^2) x (H*s) x (W*s), then
    space-to-depth by ``stride`` s."""
    name: str
    src: int
    dst: int
    stride: int
    layer: Optional[int] = None
    KIND: ClassVar[str] = "reorg"
    INTS: ClassVar[Dict[str, int]] = {"src": 0, "dst": 1, "stride": 1}

    def output_shape(self, buffers: Sequence[Shape]) -> Shape:
        (c, h, w), s = buffers[self.src], self.stride
        if c % (s * s) or h % s or w % s:
            raise PlanError(f"reorg stride {s} does not fit buffer {c}x{h}x{w}")
        return c * s * s, h // s, w // s


@dataclass(frozen=True)
class Concat(Op):
    """``srcs`` one after the other along the channels."""
    name: str
    srcs: Tuple[int, ...]
    dst: int
    layer: Optional[int] = None
    KIND: ClassVar[str] = "concat"
    INTS: ClassVar[Dict[str, int]] = {"dst": 1}

    def _validate(self) -> None:
        object.__setattr__(self, "srcs", _indices(self.srcs, "srcs"))

    @property
    def sources(self) -> Tuple[int, ...]:
        return self.srcs

    def output_shape(self, buffers: Sequence[Shape]) -> Shape:
        shapes = [tuple(buffers[s]) for s in self.srcs]
        h, w = shapes[0][1:]
        if any(s[1:] != (h, w) for s in shapes):
            raise PlanError(f"concat sources {[list(s) for s in shapes]} differ in height or width")
        return sum(s[0] for s in shapes), h, w


@dataclass(frozen=True)
class Gather(Op):
    """Destination channel j = source channel ``channels[j]`` (repeats and skips allowed):
    a FastDSC block with per-channel terms lowers to gather -> depthwise -> pointwise."""
    name: str
    src: int
    dst: int
    channels: Tuple[int, ...]
    layer: Optional[int] = None
    KIND: ClassVar[str] = "gather"
    INTS: ClassVar[Dict[str, int]] = {"src": 0, "dst": 1}

    def _validate(self) -> None:
        ch = self.channels
        if not isinstance(ch, (list, tuple)) or not ch:
            raise PlanError(f"gather needs a non-empty list of source channels, got {ch!r}")
        bad = [v for v in ch if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0]
        if bad:
            raise PlanError(f"gather channel index {bad[0]!r} is not a channel (an int >= 0)")
        object.__setattr__(self, "channels", tuple(int(v) for v in ch))

    def output_shape(self, buffers: Sequence[Shape]) -> Shape:
        c, h, w = buffers[self.src]
        bad = [v for v in self.channels if v >= c]
        if bad:           # the kernel reads source channel channels[j] unchecked
            raise PlanError(f"gather channel index {bad[0]!r} is not a channel of its "
                            f"{c}-channel source (allowed: 0..{c - 1})")
        return len(self.channels), h, w

    def check(self, buffers: Sequence[Shape], tensors: Mapping[str, np.ndarray]) -> None:
        if self.dst >= len(buffers):
            raise PlanError(f"buffers [{self.src}] -> {self.dst} out of order or range")
        n, h, w = self.output_shape(buffers)
        have = tuple(buffers[self.dst])
        if have != (n, h, w):
            c = buffers[self.src][0]
            raise PlanError(f"gather of {n} channels from {c}x{h}x{w} makes {n}x{h}x{w}, but "
                            f"buffer {self.dst} is {'x'.join(map(str, have))}")


OP_TYPES: Dict[str, Type[Op]] = {cls.KIND: cls for cls in (Conv, MaxPool, Reorg, Concat, Gather)}


def op_from_dict(d: Mapping) -> Op:
    """The op a plan file's dict describes (PlanError when it does not describe one). Keys
    that no op has are ignored."""
    kind = d.get("op") if isinstance(d, dict) else None
    cls = OP_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise PlanError(f"unknown op type {kind!r}")
    keys = [f.name for f in fields(cls)]
    missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING]
    if missing:
        raise PlanError(f"no {missing[0]!r}", f"op ({op_label(kind, d.get('name'))})")
    return cls(**{k: d[k] for k in keys if k in d})


def handler(table: Dict[type, T], op: Op) -> T:
    """``table[type(op)]``, with an error that names the op when the table has none."""
    try:
        return table[type(op)]
    except KeyError:
        raise TypeError(f"{op!r} is not a plan op of a known type "
                        f"({', '.join(sorted(OP_TYPES))})") from None

