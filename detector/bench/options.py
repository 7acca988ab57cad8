"""What a benchmark run is asked to do: :class:`BenchOptions` and the checks of its values.

The command line builds the options (``detector bench``); :func:`detector.bench.bench` runs
them. Errors name the field (:class:`detector.errors.ParamError`), e.g. ``rounds=0: must be
an integer >= 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..errors import ParamError
from ..models.checks import check_input_size
from .cases import select_cases

DEFAULT_MODELS = ("yolov2-voc", "yolov2-voc-fastdsc", "yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc")


@dataclass
class BenchOptions:
    """``models`` (zoo names, spec YAMLs or checkpoints) at every input size of ``sizes``,
    run as the cases ``backends`` (names from ``cases.CASES``; None: every default case);
    ``int8`` adds ``ort-int8``.

    ``rounds`` interleaved rounds after ``warmup`` untimed calls per case; each case runs
    as many calls per round as fill about ``target_s`` seconds (1 to 10). ``layers``: per-layer
    times (ORT profiler; the kernel engine's for the ``cuda`` cases); ``tune``: measure the
    pointwise form per layer first (else use the stored choice); ``threads``: ORT intra-op
    threads (None: physical cores, adaptive); ``startup``: a model whose load-to-first-detection
    is also timed in fresh processes; ``json_out``: where the JSON record goes; ``command``:
    the command line it records.
    """
    models: Sequence[str] = DEFAULT_MODELS
    sizes: Sequence[int] = (416,)
    backends: Optional[Sequence[str]] = None
    rounds: int = 5
    warmup: int = 2
    layers: bool = False
    int8: bool = False
    tune: bool = True
    threads: Optional[int] = None
    target_s: float = 0.25
    startup: Optional[str] = None
    cache_dir: Optional[str] = None
    json_out: Optional[str] = None
    command: str = "detector bench"

    def check(self) -> None:
        """Raise :class:`ParamError` naming the first field with a bad value."""
        for name, least in (("rounds", 1), ("warmup", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ParamError(name, f"must be an integer >= {least}", value=v)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ParamError("threads", "must be a positive integer", value=self.threads)
        if not self.models:
            raise ParamError("models", "name at least one model")
        for size in self.sizes:
            check_input_size(size, "sizes")
        self.cases()

    def cases(self) -> List[str]:
        """The case names of the run, in the order of the rows."""
        return select_cases(self.backends, self.int8)
