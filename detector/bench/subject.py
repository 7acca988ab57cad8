"""One model at one input size: what all its benchmark cases share.

The lowered plan, the preprocessed benchmark frame, and the runners several cases use (our
ORT runner, the bf16 runner, the detector ``detector.load`` would build) are made once, on
first use, so a run that does not ask for a case does not pay for its runner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from ..engine.cpu_choice import choose_cpu_runner
from ..engine.detector import Detector
from ..engine.model_file import random_if_spec, read_model
from ..engine.plan import lower
from ..engine.runners import available_backends, make_runner
from ..engine.runners.ort import OrtRunner
from ..engine.runners.torch_bf16 import OneDnnRunner, bf16_supported
from ..engine.tune import tune_pointwise
from ..errors import ParamError
from ..models.spec import FastDSC
from ..preprocess import Preprocessor
from .case import Skip, log

_UNSET = object()


@dataclass
class Records:
    """What the run measures besides the rounds, per ``model@size``."""
    pointwise: Dict[str, dict] = field(default_factory=dict)   # the 1x1 Conv / GEMM tuning
    int8: Dict[str, dict] = field(default_factory=dict)        # int8's accuracy cost


class Subject:
    """A zoo model or checkpoint ``name`` lowered at ``size``, with the benchmark ``frame``
    preprocessed for it. ``cases``: the case names of the run (the ``frame`` case runs on
    our CUDA kernels when ``cuda`` is one of them and can run here)."""

    def __init__(self, name: str, size: int, frame: np.ndarray, cases: Sequence[str],
                 workdir: str, records: Records, cache_dir: Optional[str] = None,
                 threads: Optional[int] = None, tune: bool = True):
        try:
            model = read_model(random_if_spec(name))
        except ParamError as e:
            raise ParamError("models", e.message, value=name) from None
        if model.state is None:
            raise ParamError("models", "the benchmark needs a checkpoint or zoo model, not a "
                             "lowered plan", value=name)
        self.name, self.size, self.frame, self.cases = name, size, frame, list(cases)
        self.workdir, self.records = workdir, records
        self.cache_dir, self.threads, self.tune = cache_dir, threads, tune
        self.model, self.spec, self.state = model, model.spec, model.state
        self.plan = lower(model.spec, model.state, size, model.names)
        self.gflops = self.plan.total_flops() / 1e9
        spec_name = self.spec.name      # the regular network this model derives from:
        self.family = spec_name[:-len("-fastdsc")] if spec_name.endswith("-fastdsc") else spec_name
        self.fastdsc = any(isinstance(layer, FastDSC) for layer in self.spec.layers)
        self.available = available_backends()
        self.blob = np.empty((1, self.plan.channels, size, size), np.float32)
        Preprocessor(size, self.blob)(frame)
        self._ort = self._bf16 = self._detector = _UNSET

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.size}"

    def plan_fn(self):
        """The lowered plan (what ``make_runner`` calls to get it)."""
        return self.plan

    def ort(self):
        """Our ORT runner (pointwise forms as measured here, adaptive threading); the first
        call measures the forms per layer when the run tunes. (A runner that fails to build
        is built again by the next case that asks, which then reports the same error.)"""
        if "ort" not in self.available:
            raise Skip("onnxruntime is not installed")
        if self._ort is _UNSET:
            if self.tune:
                log(f"{self.tag}: measuring 1x1 Conv vs GEMM per layer")
                self.records.pointwise[self.tag] = tune_pointwise(
                    self.plan, self.cache_dir, self.threads,
                    log=lambda m: log(f"{self.tag}: {m}"))
            self._ort = OrtRunner(self.plan, pointwise="auto", cache_dir=self.cache_dir,
                                  threads=self.threads)
        return self._ort

    def bf16(self):
        """The lowered plan on torch's oneDNN convolutions in bfloat16."""
        if "torch" not in self.available:
            raise Skip("torch is not installed")
        if not bf16_supported():
            raise Skip("this CPU has no oneDNN bf16 convolutions")
        if self._bf16 is _UNSET:
            self._bf16 = OneDnnRunner(self.plan, "bf16")
        return self._bf16

    def detector(self):
        """The detector of the ``frame`` case: on our CUDA kernels where the run has the
        ``cuda`` case and it can run here, else on the CPU runtime ``detector.load`` picks
        (measured once, cached)."""
        if self._detector is _UNSET:
            self._detector = self._make_detector()
        if self._detector is None:
            raise Skip("neither onnxruntime nor torch bf16 is available")
        return self._detector

    def _make_detector(self):
        if "cuda" in self.available and "cuda" in self.cases:
            return Detector(self.model, make_runner("cuda", self.spec, self.state,
                                                    self.plan_fn, "cuda"), self.size)
        built = {k: r for k, r in (("ort", self.maybe(self.ort)),
                                   ("bf16", self.maybe(self.bf16))) if r is not None}
        _, runner = choose_cpu_runner(self.plan, self.cache_dir, built)
        return None if runner is None else Detector(self.model, runner, self.size)

    @staticmethod
    def maybe(get: Callable[[], object]):
        """``get()``, or None where it skips."""
        try:
            return get()
        except Skip:
            return None
