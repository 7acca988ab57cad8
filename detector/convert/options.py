"""What a conversion is asked to do: :class:`ConvertOptions` and the checks of its values.

The command line builds the options (``detector convert``); :func:`detector.convert.convert`
runs them. Errors name the field (:class:`detector.errors.ParamError`), e.g.
``als=-1: must be an integer >= 0``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

from ..errors import ParamError
from ..models.checks import check_input_size
from .decouple import DEFAULT_ENERGY, check_options

METHODS = ("nd", "dd")


@dataclass
class ConvertOptions:
    """``weights``: a checkpoint, darknet ``.weights`` (with ``cfg``) or a zoo name.

    ``method``: ``nd`` (Network Decoupling, no data) or ``dd`` (ND, then Depth-wise
    Decomposition on ``calib`` images). ``terms`` (a fixed T, or one T per converted layer) or
    ``energy`` (default 0.95) picks T per layer; ``allocate``: ``channel`` shares a dw_pw
    layer's terms among its input channels by singular value, ``layer`` gives each the same T
    (see ``decouple``); ``order``: auto | dw_pw | pw_dw. With ``calib`` and ``nd`` the errors
    are measured but nothing is fitted. ``calib``: FOOTAGE (one text or several, see
    ``calib``), ``calib_images`` frames from each, of which ``holdout`` is held out: never
    fitted, it measures the agreement of the converted model with the original (the report's
    ``agreement``). ``distill_epochs``: after the conversion, distil the converted model
    against the original on the fitted part of the footage for that many epochs
    (``detector.distill``, ``distill_batch`` frames a step); ``out`` is then the distilled
    model, its run in ``out`` without the extension plus ``.distill``.
    ``latency_runs=0`` skips the latency measurement; ``map_eval`` evaluates mAP
    before/after when ``calib`` has a dataset YAML with a ``val`` split. ``alpha``,
    ``batch``, ``gsvd``, ``als``: DD's ridge prior, images per forward batch, data-aware
    initial factors and rounds of the alternating refit (see ``refine``).
    """
    weights: str
    method: str = "nd"
    cfg: Optional[str] = None
    names: Union[str, List[str], None] = None
    terms: Union[int, List[int], None] = None
    energy: Optional[float] = None
    order: str = "auto"
    allocate: str = "channel"
    calib: Union[str, List[str], None] = None   # FOOTAGE: calibration frames
    calib_split: Optional[str] = None     # of a dataset YAML; default: train, else the first
    calib_images: int = 200               # frames drawn from each FOOTAGE text
    holdout: float = 0.125                # fraction of them held out (judged, never fitted)
    distill_epochs: int = 0
    distill_batch: int = 8
    img_size: Optional[int] = None        # calibration/FLOPs/latency input (default: the model's)
    out: Optional[str] = None             # the converted checkpoint (.safetensors)
    report: Optional[str] = None          # the report as JSON
    latency_runs: int = 5
    map_eval: bool = True
    alpha: float = 1e-2
    batch: int = 8
    seed: int = 0
    progress: bool = True
    keep_first: bool = True
    bn_weighted: bool = True
    gsvd: bool = True
    als: int = 2

    @property
    def selection(self) -> str:
        """How T is chosen, as the report and the checkpoint record it."""
        if self.terms is None:
            return f"energy={self.energy if self.energy is not None else DEFAULT_ENERGY}"
        if isinstance(self.terms, (list, tuple)):
            return "terms=" + ",".join(map(str, self.terms))
        return f"terms={self.terms}"

    def check(self) -> None:
        """Raise :class:`ParamError` naming the first field with a bad value."""
        if self.method not in METHODS:
            raise ParamError("method", "allowed values: " + ", ".join(METHODS),
                             value=self.method)
        if self.method == "dd" and not self.calib:
            raise ParamError("calib", "method dd needs calibration images (footage: a dataset "
                             "YAML, images, a video or a camera/stream)")
        if self.distill_epochs and not (self.calib and self.out):
            raise ParamError("distill_epochs", "distillation needs calibration footage (calib) "
                             "and an output file (out)", value=self.distill_epochs)
        check_options(self.terms, self.energy, self.order, self.allocate)
        for name, least in (("calib_images", 1), ("latency_runs", 0), ("batch", 1), ("als", 0),
                            ("distill_epochs", 0), ("distill_batch", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ParamError(name, f"must be an integer >= {least}", value=v)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not self.alpha >= 0:
            raise ParamError("alpha", "must be a number >= 0", value=self.alpha)
        if not 0.0 < self.holdout < 1.0:
            raise ParamError("holdout", "must be a fraction in (0, 1)", value=self.holdout)
        if self.img_size is not None:
            check_input_size(self.img_size)
        if self.out is not None and not self.out.endswith(".safetensors"):
            raise ParamError("out", "expected a .safetensors path", value=self.out)
