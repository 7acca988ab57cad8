"""Model specs: the layer list of a YOLOv2 network, in darknet's layer order.

A spec is plain data (no torch): the torch model, the darknet cfg writer, the lowered
inference plan and the FLOP counter are all built from it. ``spec_yaml.py`` reads specs (zoo
names and YAML files), ``checks.py`` holds the checks that need the whole network. A spec
YAML::

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

Besides the detector's layers, darknet's classifier layers exist so its classifier cfgs
(Darknet-19, whose weights seed a detector's backbone) read, run and write: ``dropout``
(identity at inference), ``avgpool`` (global average), ``softmax`` and ``cost`` (identity at
inference). A spec without ``region`` is such a classifier. A region with ``tree`` is
YOLO9000's WordTree head (``detector.wordtree``): its classes are the tree's, its class
scores a softmax per group of siblings; ``map`` lists the tree class of each class of a
flat dataset (darknet's ``coco9k.map``). ``input.resize`` says how the weights expect frames
resized: ``opencv`` (OpenCV's bilinear resize, as FastDSC-YOLO trains) or ``darknet``
(darknet's own ``resize_image``, for weights trained by darknet).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple, Union

from ..errors import ConfigError
from ..wordtree import WordTree

ACTIVATIONS = ("leaky", "linear", "relu")
# Darknet trains with cuDNN's batch norm, epsilon 1e-5 (its CPU path uses sqrt(var) + 1e-6;
# the difference is below float32 noise for real variances).
BN_EPS = 1e-5
LEAKY_SLOPE = 0.1


def has_bias(bn: bool, act: str) -> bool:
    """A conv carries a bias unless BN follows, or nothing nonlinear follows before the
    next linear layer, which absorbs it (the linear middle of a decoupled FastDSC block)."""
    return not bn and act != "linear"


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


@dataclass
class Dropout:
    """Darknet ``[dropout]``: identity at inference; in training, zero with ``probability``
    and scale the rest by 1 / (1 - probability)."""
    probability: float = 0.5
    type: str = field(default="dropout", init=False)


@dataclass
class AvgPool:
    """Darknet ``[avgpool]``: the mean of each channel over the whole image -> (C, 1, 1)."""
    type: str = field(default="avgpool", init=False)


@dataclass
class Softmax:
    """Darknet ``[softmax]``: the whole output (C*H*W values) split into ``groups`` equal
    parts, a softmax over each, inputs divided by ``temperature``."""
    groups: int = 1
    temperature: float = 1.0
    type: str = field(default="softmax", init=False)


COST_KINDS = ("sse", "masked", "smooth", "L1", "seg", "wgan")


@dataclass
class Cost:
    """Darknet ``[cost]`` (its ``type=`` is ``kind`` here): a training loss on the output,
    identity at inference."""
    kind: str = "sse"
    scale: float = 1.0
    type: str = field(default="cost", init=False)


Layer = Union[Conv, FastDSC, MaxPool, Route, Reorg, Dropout, AvgPool, Softmax, Cost]
# layers whose output is their input at inference (no computation, no parameters)
IDENTITY_LAYERS = (Dropout, Cost)
RESIZES = ("opencv", "darknet")


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
    tree: Optional[WordTree] = None
    map: Optional[List[int]] = None

    @property
    def num(self) -> int:
        return len(self.anchors)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("tree", "map")}
        d["anchors"] = [[float(w), float(h)] for w, h in self.anchors]
        if self.tree is not None:
            d["tree"] = {"names": list(self.tree.names), "parents": self.tree.parents()}
        if self.map is not None:
            d["map"] = [int(m) for m in self.map]
        return d


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
    region: Optional[Region]           # None: a classifier (darknet's Darknet-19 cfgs)
    classes: int
    size: int = 416
    channels: int = 3
    names: Optional[List[str]] = None
    train: TrainSettings = field(default_factory=TrainSettings)
    resize: str = "opencv"             # how the weights expect frames resized (RESIZES)

    # ---- derived -------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return self.region.num * (5 + self.classes) if self.region else self.classes

    @property
    def tree(self) -> Optional[WordTree]:
        """The region's WordTree, or None (a flat softmax over the classes)."""
        return self.region.tree if self.region else None

    def class_names(self) -> List[str]:
        """``names``; else a tree's own class names (synset ids); else the class numbers."""
        if self.names:
            return list(self.names)
        if self.tree is not None:
            return list(self.tree.names)
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
        if self.resize != "opencv":
            d["input"]["resize"] = self.resize
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
        if self.region is not None:
            d["region"] = self.region.to_dict()
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
        if isinstance(layer, Route):
            c, h, w = _route_shape(layer, i, shapes, path)
        else:
            c, h, w = _layer_shape(layer, c, h, w, path, key)
        if h <= 0 or w <= 0:
            raise ConfigError(path, key, f"input {height}x{width} is too small for this network")
        shapes.append((c, h, w))
    return shapes


def _layer_shape(layer: Layer, c: int, h: int, w: int, path: Optional[str],
                 key: str) -> Tuple[int, int, int]:
    """The output shape of ``layer`` (not a route) for an input of (c, h, w)."""
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
        return (layer.filters, (h + 2 * p - layer.size) // layer.stride + 1,
                (w + 2 * p - layer.size) // layer.stride + 1)
    if isinstance(layer, MaxPool):
        return (c, (h + layer.pad - layer.size) // layer.stride + 1,
                (w + layer.pad - layer.size) // layer.stride + 1)
    if isinstance(layer, Reorg):
        s = layer.stride
        if h % s or w % s:
            raise ConfigError(path, key, f"reorg stride {s} needs input sides divisible by "
                              f"{s}, got {h}x{w}")
        return c * s * s, h // s, w // s
    if isinstance(layer, AvgPool):
        return c, 1, 1
    if isinstance(layer, Softmax) and (c * h * w) % layer.groups:
        raise ConfigError(path, key, f"groups={layer.groups} must divide the "
                          f"{c * h * w} values of its input")
    return c, h, w                     # dropout, softmax, cost: the shape of their input


def _route_shape(layer: Route, i: int, shapes: List[Tuple[int, int, int]],
                 path: Optional[str]) -> Tuple[int, int, int]:
    key = f"layers[{i}]"
    srcs = []
    for j in layer.layers:
        a = j if j >= 0 else i + j
        if not 0 <= a < i:
            raise ConfigError(path, key, f"route index {j} points outside layers 0..{i - 1}")
        srcs.append(shapes[a])
    if len({(s[1], s[2]) for s in srcs}) != 1:
        raise ConfigError(path, key, "route concatenates layers of different sizes: "
                          + ", ".join(f"{s[1]}x{s[2]}" for s in srcs))
    return sum(s[0] for s in srcs), srcs[0][1], srcs[0][2]


def with_classes(spec: ModelSpec, classes: int, names: Optional[List[str]] = None) -> ModelSpec:
    """The same network with a head for ``classes`` classes (last conv resized). A WordTree
    head keeps its tree: the classes are the tree's."""
    if spec.tree is not None:
        if classes != spec.classes:
            raise ValueError(f"{spec.name} predicts the {spec.classes} classes of its tree; "
                             f"{classes} classes map into it (region map), not replace it")
        return copy.deepcopy(spec)
    new = copy.deepcopy(spec)
    new.classes = classes
    new.names = list(names) if names else None
    new.layers[-1].filters = new.num_outputs
    return new

