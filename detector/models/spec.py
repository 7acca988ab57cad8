"""Model specs: the layer list of a YOLOv2 network, in darknet's layer order.

A spec is plain data (no torch): the torch model, the darknet cfg writer, the lowered
inference plan and the FLOP counter are all built from it. Zoo specs live in
``detector/models/specs/<name>.yaml``; any YAML path with the same keys works too::

    name: yolov2-tiny-voc-fastdsc
    input: {size: 416, channels: 3}
    classes: 20
    names: [aeroplane, ...]            # optional
    layers:
      - {type: conv, filters: 16, size: 3}
      - {type: maxpool, size: 2, stride: 2}
      - {type: fastdsc, filters: 32}     # depthwise 3x3 -> BN -> leaky -> pointwise GEMM -> BN -> leaky
      - {type: route, layers: [-9]}
      - {type: reorg, stride: 2}
    region: {anchors: [[1.08, 1.19], ...], ...}

Layer indices (for ``route``) count from 0 over ``layers`` exactly as darknet counts its
sections after ``[net]``.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple, Union

from ..config import Section, load_yaml
from ..errors import ConfigError, UserError

ACTIVATIONS = ("leaky", "linear", "relu")
# Darknet trains with cuDNN's batch norm, epsilon 1e-5 (its CPU path uses sqrt(var) + 1e-6;
# the difference is below float32 noise for real variances).
BN_EPS = 1e-5
LEAKY_SLOPE = 0.1


def has_bias(bn: bool, act: str) -> bool:
    """A conv carries a bias unless BN follows, or nothing nonlinear follows before the
    next linear layer, which absorbs it (the linear middle of a decoupled FastDSC block)."""
    return not bn and act != "linear"
SPEC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")
NETWORK_STRIDE = 32

VOC_NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
             "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
             "sheep", "sofa", "train", "tvmonitor"]


@dataclass
class Conv:
    """Regular convolution (darknet ``[convolutional]``), optional BN, activation."""
    filters: int
    size: int = 3
    stride: int = 1
    pad: Optional[int] = None          # pixels; None = size // 2 (darknet pad=1)
    groups: int = 1
    bn: bool = True
    act: str = "leaky"
    type: str = field(default="conv", init=False)

    @property
    def padding(self) -> int:
        return self.size // 2 if self.pad is None else self.pad


@dataclass
class FastDSC:
    """Depthwise-separable replacement of a KxK conv (the FastDSC block).

    order ``dw_pw``: depthwise KxK conv (channel multiplier ``multiplier``) -> [mid BN] ->
    mid activation -> pointwise GEMM ``W[filters, Cin*multiplier] @ X`` -> [BN] -> activation.
    order ``pw_dw``: pointwise GEMM to ``filters*multiplier`` channels -> [mid BN] -> mid
    activation -> grouped KxK conv summing each group of ``multiplier`` channels -> [BN] ->
    activation. Network Decoupling produces both orders with ``mid_bn: false``,
    ``mid_act: linear``.

    ``terms`` (``dw_pw`` only, optional): a channel multiplier per input channel, one count
    (0 to K*K) for each, in place of the uniform ``multiplier``. Input channel c then gives
    ``terms[c]`` middle channels, channel-major as with ``multiplier``; the depthwise step is
    a channel gather followed by a depthwise conv with one kernel per middle channel.
    """
    filters: int
    size: int = 3
    stride: int = 1
    multiplier: int = 1
    order: str = "dw_pw"
    mid_bn: bool = True
    mid_act: str = "leaky"
    bn: bool = True
    act: str = "leaky"
    terms: Optional[List[int]] = None
    type: str = field(default="fastdsc", init=False)

    @property
    def padding(self) -> int:
        return self.size // 2

    def mid_channels(self, cin: int) -> int:
        """Channels between the block's two convs for ``cin`` input channels."""
        if self.terms is not None:
            return int(sum(self.terms))
        return (cin if self.order == "dw_pw" else self.filters) * self.multiplier

    def gather_index(self) -> Optional[List[int]]:
        """The input channel of every middle channel (``terms`` only, else None)."""
        if self.terms is None:
            return None
        return [c for c, t in enumerate(self.terms) for _ in range(int(t))]


@dataclass
class MaxPool:
    """Darknet maxpool: out = (in + padding - size) // stride + 1, window offset -padding//2."""
    size: int = 2
    stride: int = 2
    padding: Optional[int] = None      # None = size - 1 (darknet default)
    type: str = field(default="maxpool", init=False)

    @property
    def pad(self) -> int:
        return self.size - 1 if self.padding is None else self.padding


@dataclass
class Route:
    layers: List[int]
    type: str = field(default="route", init=False)


@dataclass
class Reorg:
    """Darknet's reorg (passthrough), with darknet's own memory layout (see blocks.Reorg)."""
    stride: int = 2
    type: str = field(default="reorg", init=False)


Layer = Union[Conv, FastDSC, MaxPool, Route, Reorg]
LAYER_TYPES = {"conv": Conv, "fastdsc": FastDSC, "maxpool": MaxPool, "route": Route,
               "reorg": Reorg}


@dataclass
class Region:
    """Darknet ``[region]``: anchors in grid units and the loss settings."""
    anchors: List[Tuple[float, float]]
    bias_match: bool = True
    jitter: float = 0.2
    rescore: bool = True
    object_scale: float = 5.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    coord_scale: float = 1.0
    thresh: float = 0.6
    random: bool = True

    @property
    def num(self) -> int:
        return len(self.anchors)


@dataclass
class TrainSettings:
    """Darknet ``[net]`` training settings (used by ``detector train`` as defaults)."""
    batch: int = 64
    momentum: float = 0.9
    decay: float = 0.0005
    learning_rate: float = 0.001
    burn_in: int = 1000
    max_batches: int = 80200
    steps: List[int] = field(default_factory=lambda: [40000, 60000])
    scales: List[float] = field(default_factory=lambda: [0.1, 0.1])
    saturation: float = 1.5
    exposure: float = 1.5
    hue: float = 0.1


@dataclass
class ModelSpec:
    name: str
    layers: List[Layer]
    region: Region
    classes: int
    size: int = 416
    channels: int = 3
    names: Optional[List[str]] = None
    train: TrainSettings = field(default_factory=TrainSettings)

    # ---- derived -------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return self.region.num * (5 + self.classes)

    def class_names(self) -> List[str]:
        if self.names:
            return list(self.names)
        return [str(i) for i in range(self.classes)]

    def shapes(self, size: Optional[int] = None) -> List[Tuple[int, int, int]]:
        """(C, H, W) of every layer's output for a square input of ``size`` pixels."""
        return infer_shapes(self, size or self.size, size or self.size)

    def route_sources(self, i: int) -> List[int]:
        """Absolute indices of the layers a route at index ``i`` concatenates."""
        layer = self.layers[i]
        return [j if j >= 0 else i + j for j in layer.layers]

    def to_dict(self) -> dict:
        d = {"name": self.name, "input": {"size": self.size, "channels": self.channels},
             "classes": self.classes}
        if self.names:
            d["names"] = list(self.names)
        layers = []
        for layer in self.layers:
            ld = {"type": layer.type}
            for k, v in asdict(layer).items():
                if k != "type" and v is not None:
                    ld[k] = list(v) if isinstance(v, tuple) else v
            layers.append(ld)
        d["layers"] = layers
        region = asdict(self.region)
        region["anchors"] = [[float(w), float(h)] for w, h in self.region.anchors]
        d["region"] = region
        d["train"] = asdict(self.train)
        return d

    def replace(self, **changes) -> "ModelSpec":
        new = copy.deepcopy(self)
        for k, v in changes.items():
            setattr(new, k, v)
        return new


# ---- shape inference -------------------------------------------------------------------

def infer_shapes(spec: ModelSpec, height: int, width: int,
                 path: Optional[str] = None) -> List[Tuple[int, int, int]]:
    """Output shape of every layer; raises ConfigError for inconsistent layer lists."""
    shapes: List[Tuple[int, int, int]] = []
    c, h, w = spec.channels, height, width
    for i, layer in enumerate(spec.layers):
        key = f"layers[{i}]"
        if isinstance(layer, (Conv, FastDSC)):
            groups = getattr(layer, "groups", 1)
            if c % groups or layer.filters % groups:
                raise ConfigError(path, key, f"groups={groups} must divide input channels {c} "
                                  f"and filters {layer.filters}")
            terms = getattr(layer, "terms", None)
            if terms is not None and len(terms) != c:
                raise ConfigError(path, key + ".terms", f"{len(terms)} counts for {c} input "
                                  "channels: one per input channel, please")
            p = layer.padding
            h = (h + 2 * p - layer.size) // layer.stride + 1
            w = (w + 2 * p - layer.size) // layer.stride + 1
            c = layer.filters
        elif isinstance(layer, MaxPool):
            h = (h + layer.pad - layer.size) // layer.stride + 1
            w = (w + layer.pad - layer.size) // layer.stride + 1
        elif isinstance(layer, Reorg):
            s = layer.stride
            if h % s or w % s:
                raise ConfigError(path, key, f"reorg stride {s} needs input sides divisible by "
                                  f"{s}, got {h}x{w}")
            c, h, w = c * s * s, h // s, w // s
        elif isinstance(layer, Route):
            srcs = []
            for j in layer.layers:
                a = j if j >= 0 else i + j
                if not 0 <= a < i:
                    raise ConfigError(path, key, f"route index {j} points outside layers 0..{i - 1}")
                srcs.append(shapes[a])
            if len({(s[1], s[2]) for s in srcs}) != 1:
                raise ConfigError(path, key, "route concatenates layers of different sizes: "
                                  + ", ".join(f"{s[1]}x{s[2]}" for s in srcs))
            c, h, w = sum(s[0] for s in srcs), srcs[0][1], srcs[0][2]
        if h <= 0 or w <= 0:
            raise ConfigError(path, key, f"input {height}x{width} is too small for this network")
        shapes.append((c, h, w))
    return shapes


def check_input_size(size: int, what: str = "--img-size") -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size > 4096 \
            or size % NETWORK_STRIDE:
        raise UserError(f"{what} {size!r} is invalid: must be a multiple of {NETWORK_STRIDE} "
                        f"between 32 and 4096")
    return size


# ---- reading specs ---------------------------------------------------------------------

def zoo_names() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(SPEC_DIR) if f.endswith(".yaml"))


def is_zoo_name(name: str) -> bool:
    return isinstance(name, str) and os.sep not in name and name in zoo_names()


def load_spec(name_or_path: str) -> ModelSpec:
    """A zoo name (``yolov2-voc-fastdsc``) or the path of a spec YAML."""
    if is_zoo_name(name_or_path):
        path = os.path.join(SPEC_DIR, name_or_path + ".yaml")
    elif name_or_path.endswith((".yaml", ".yml")):
        path = name_or_path
    else:
        raise UserError(f"unknown model {name_or_path!r}: give a zoo name "
                        f"({', '.join(zoo_names())}) or a spec .yaml path")
    return spec_from_dict(load_yaml(path), path)


def _parse_layer(raw, path, i) -> Layer:
    s = Section(raw, path, f"layers[{i}]")
    t = s.str("type", choices=list(LAYER_TYPES))
    if t == "conv":
        s.reject_unknown(["type", "filters", "size", "stride", "pad", "groups", "bn", "act"])
        size = s.int("size", 3, lo=1, hi=15)
        return Conv(filters=s.int("filters", lo=1, hi=65536), size=size,
                    stride=s.int("stride", 1, lo=1, hi=8),
                    pad=s.int("pad", None, lo=0, hi=size) if "pad" in raw else None,
                    groups=s.int("groups", 1, lo=1), bn=s.bool("bn", True),
                    act=s.str("act", "leaky", choices=ACTIVATIONS))
    if t == "fastdsc":
        s.reject_unknown(["type", "filters", "size", "stride", "multiplier", "order", "mid_bn",
                          "mid_act", "bn", "act", "terms"])
        size = s.int("size", 3, lo=1, hi=15)
        order = s.str("order", "dw_pw", choices=["dw_pw", "pw_dw"])
        terms = s.list("terms", None)
        if terms is not None:
            if order != "dw_pw":
                raise s.error("terms", "per-channel terms need order dw_pw")
            if not terms or not all(isinstance(t, int) and not isinstance(t, bool)
                                    and 0 <= t <= size * size for t in terms) or sum(terms) < 1:
                raise s.error("terms", f"expected a list of integers from 0 to {size * size} "
                              "(one per input channel), at least one of them positive")
        return FastDSC(filters=s.int("filters", lo=1, hi=65536), size=size,
                       stride=s.int("stride", 1, lo=1, hi=8),
                       multiplier=s.int("multiplier", 1, lo=1, hi=225), order=order,
                       mid_bn=s.bool("mid_bn", True),
                       mid_act=s.str("mid_act", "leaky", choices=ACTIVATIONS),
                       bn=s.bool("bn", True), act=s.str("act", "leaky", choices=ACTIVATIONS),
                       terms=None if terms is None else [int(t) for t in terms])
    if t == "maxpool":
        s.reject_unknown(["type", "size", "stride", "padding"])
        size = s.int("size", 2, lo=1, hi=16)
        return MaxPool(size=size, stride=s.int("stride", 2, lo=1, hi=16),
                       padding=s.int("padding", None, lo=0, hi=2 * size) if "padding" in raw else None)
    if t == "route":
        s.reject_unknown(["type", "layers"])
        idx = s.list("layers")
        if not idx or not all(isinstance(j, int) and not isinstance(j, bool) for j in idx):
            raise s.error("layers", "expected a non-empty list of layer indices")
        return Route(layers=list(idx))
    s.reject_unknown(["type", "stride"])
    return Reorg(stride=s.int("stride", 2, lo=2, hi=8))


def spec_from_dict(data: dict, path: Optional[str] = None) -> ModelSpec:
    """Validate a spec mapping (from YAML or checkpoint metadata) into a ModelSpec."""
    top = Section(data, path)
    top.reject_unknown(["name", "input", "classes", "names", "layers", "region", "train"])
    inp = top.section("input", {})
    inp.reject_unknown(["size", "channels"])
    size = inp.int("size", 416, lo=32, hi=4096)
    if size % NETWORK_STRIDE:
        raise inp.error("size", f"{size} is not a multiple of {NETWORK_STRIDE}")
    classes = top.int("classes", lo=1, hi=100000)
    names = top.list("names", None)
    if names is not None:
        if len(names) != classes or not all(isinstance(n, str) and n for n in names):
            raise top.error("names", f"expected {classes} class names (one per class), "
                            f"got {len(names)}")
    layers_raw = top.list("layers")
    if not layers_raw:
        raise top.error("layers", "expected at least one layer")
    layers = [_parse_layer(raw, path, i) for i, raw in enumerate(layers_raw)]
    reg = top.section("region")
    reg.reject_unknown([f for f in Region.__dataclass_fields__])
    anchors = reg.list("anchors")
    if not anchors or not all(isinstance(a, (list, tuple)) and len(a) == 2
                              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and v > 0 for v in a) for a in anchors):
        raise reg.error("anchors", "expected a list of [width, height] pairs > 0 (grid units)")
    region = Region(anchors=[(float(a[0]), float(a[1])) for a in anchors],
                    bias_match=reg.bool("bias_match", True), jitter=reg.float("jitter", 0.2, 0, 1),
                    rescore=reg.bool("rescore", True),
                    object_scale=reg.float("object_scale", 5.0, 0),
                    noobject_scale=reg.float("noobject_scale", 1.0, 0),
                    class_scale=reg.float("class_scale", 1.0, 0),
                    coord_scale=reg.float("coord_scale", 1.0, 0),
                    thresh=reg.float("thresh", 0.6, 0, 1), random=reg.bool("random", True))
    tr = top.section("train", {})
    tr.reject_unknown([f for f in TrainSettings.__dataclass_fields__])
    d = TrainSettings()
    steps = tr.list("steps", d.steps)
    scales = tr.list("scales", d.scales)
    if len(steps) != len(scales):
        raise tr.error("scales", f"expected one scale per step ({len(steps)}), got {len(scales)}")
    train = TrainSettings(batch=tr.int("batch", d.batch, lo=1), momentum=tr.float("momentum", d.momentum, 0, 1),
                          decay=tr.float("decay", d.decay, 0), learning_rate=tr.float("learning_rate", d.learning_rate, 0),
                          burn_in=tr.int("burn_in", d.burn_in, lo=0), max_batches=tr.int("max_batches", d.max_batches, lo=1),
                          steps=[int(x) for x in steps], scales=[float(x) for x in scales],
                          saturation=tr.float("saturation", d.saturation, 1), exposure=tr.float("exposure", d.exposure, 1),
                          hue=tr.float("hue", d.hue, 0, 0.5))
    spec = ModelSpec(name=top.str("name", os.path.splitext(os.path.basename(path or "model"))[0]),
                     layers=layers, region=region, classes=classes, size=size,
                     channels=inp.int("channels", 3, lo=1, hi=4), names=names, train=train)
    validate(spec, path)
    return spec


def validate(spec: ModelSpec, path: Optional[str] = None) -> None:
    """Checks that need the whole network: shapes, the head matching the region, and a size
    that fits in memory."""
    shapes = infer_shapes(spec, spec.size, spec.size, path)
    last = spec.layers[-1]
    if not isinstance(last, (Conv, FastDSC)) or shapes[-1][0] != spec.num_outputs:
        raise ConfigError(path, f"layers[{len(spec.layers) - 1}]",
                          f"the last layer must be a conv with num*(classes+5) = "
                          f"{spec.region.num}*({spec.classes}+5) = {spec.num_outputs} filters, "
                          f"got {shapes[-1][0]}")
    check_model_size(spec, spec.size, path)


MAX_PARAMS = 1 << 28          # weights of one model (1 GiB as float32); yolov2-voc has 51M
MAX_LAYER_VALUES = 1 << 30    # one layer's output (4 GiB as float32); yolov2-voc at 4096 px: 0.5G


def check_model_size(spec: ModelSpec, size: int, path: Optional[str] = None) -> None:
    """Refuse, before allocating anything, a network whose weights or one layer's output at
    ``size`` pixels would not fit in memory (a hostile or mistyped spec or cfg)."""
    from .params import conv_params
    params = 0
    for c in conv_params(spec):
        o, i, kh, kw = c.weight_shape
        params += o * i * kh * kw
    if params > MAX_PARAMS:
        raise ConfigError(path, "layers", f"{params:,} weights: more than the {MAX_PARAMS:,} "
                          "a model may have here; fewer filters, please")
    c_in, h_in, w_in = spec.channels, size, size
    for i, (layer, (c, h, w)) in enumerate(zip(spec.layers, infer_shapes(spec, size, size,
                                                                         path))):
        values = c * h * w
        if isinstance(layer, FastDSC):      # the block's middle tensor
            mid = layer.mid_channels(c_in)
            values = max(values, mid * max(h * w, h_in * w_in))
        if values > MAX_LAYER_VALUES:
            raise ConfigError(path, f"layers[{i}]", f"{values:,} output values at {size} px: "
                              f"more than the {MAX_LAYER_VALUES:,} one layer may have; fewer "
                              "filters or a smaller input size, please")
        c_in, h_in, w_in = c, h, w


def with_classes(spec: ModelSpec, classes: int, names: Optional[List[str]] = None) -> ModelSpec:
    """The same network with a head for ``classes`` classes (last conv resized)."""
    new = copy.deepcopy(spec)
    new.classes = classes
    new.names = list(names) if names else None
    new.layers[-1].filters = new.num_outputs
    return new

