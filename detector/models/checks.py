"""Checks that need the whole network: the head matching the region, the input size, and a
size that fits in memory. They run before anything is allocated, so a hostile or mistyped
spec or cfg fails with one line instead of exhausting memory."""
from __future__ import annotations

from typing import Optional

from ..errors import ConfigError, ParamError
from .params import conv_params
from .spec import NETWORK_STRIDE, Conv, FastDSC, ModelSpec, infer_shapes

MIN_SIZE, MAX_SIZE = 32, 4096     # input sides in pixels, anywhere in the package
MAX_PARAMS = 1 << 28              # weights of one model (1 GiB as float32); yolov2-voc has 51M
MAX_LAYER_VALUES = 1 << 30        # one layer's output (4 GiB as float32)


def check_input_size(size: int, param: str = "img_size") -> int:
    """``size`` if it is a valid network input side; else a ParamError naming ``param``."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE \
            or size % NETWORK_STRIDE:
        raise ParamError(param, f"must be a multiple of {NETWORK_STRIDE} between {MIN_SIZE} "
                                f"and {MAX_SIZE}", value=size)
    return size


def validate(spec: ModelSpec, path: Optional[str] = None) -> None:
    """Checks that need the whole network: shapes, the head matching the region, and a size
    that fits in memory."""
    shapes = infer_shapes(spec, spec.size, spec.size, path)
    if spec.region is None:            # a classifier: any head
        check_model_size(spec, spec.size, path)
        return
    _check_tree(spec, path)
    last = spec.layers[-1]
    if not isinstance(last, (Conv, FastDSC)) or shapes[-1][0] != spec.num_outputs:
        raise ConfigError(path, f"layers[{len(spec.layers) - 1}]",
                          f"the last layer must be a conv with num*(classes+5) = "
                          f"{spec.region.num}*({spec.classes}+5) = {spec.num_outputs} filters, "
                          f"got {shapes[-1][0]}")
    check_model_size(spec, spec.size, path)


def _check_tree(spec: ModelSpec, path: Optional[str]) -> None:
    """A WordTree head predicts the tree's classes; a map names classes of the tree."""
    tree, mapping = spec.region.tree, spec.region.map
    if tree is not None and tree.size != spec.classes:
        raise ConfigError(path, "region.tree", f"the tree has {tree.size} classes but the "
                          f"model has classes={spec.classes}")
    if mapping is not None:
        if tree is None:
            raise ConfigError(path, "region.map", "a map needs a tree (it maps classes into it)")
        bad = [m for m in mapping if not 0 <= m < tree.size]
        if not mapping or bad:
            raise ConfigError(path, "region.map", f"expected tree class indices 0..{tree.size - 1}"
                              + (f", got {bad[0]}" if bad else ", got none"))


def check_model_size(spec: ModelSpec, size: int, path: Optional[str] = None) -> None:
    """Refuse, before allocating anything, a network whose weights or one layer's output at
    ``size`` pixels would not fit in memory."""
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
