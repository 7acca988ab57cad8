"""``detector bench``: our backends and per-frame path against peer runtimes, in one process.

    from detector.bench import BenchOptions, bench
    result = bench(BenchOptions(models=["yolov2-tiny-voc-fastdsc"], backends=["ort", "frame"]))

Every case (a model at an input size run one way) is built, warmed up, and timed with all
the others in interleaved rounds; speed-ups are medians of per-round ratios. The cases are
the table in ``cases.py`` (``detector bench --help`` lists them): our runtimes on the CPU
(``cpu.py``), our CUDA kernels and the same network through PyTorch/cuDNN and TensorRT on a
GPU (``gpu.py``), and the peers a user would run instead (``peers.py``). The roofline is the
machine's measured single-precision GEMM peak (``machine.py``); the table, the targets and the
JSON record are ``report.py``'s.

Modules: ``options`` (BenchOptions), ``case`` (a case and what its builder returns),
``subject`` (a model at a size, shared by its cases), ``cases`` (the table), ``cpu``,
``gpu``, ``peers`` (the builders), ``int8`` (int8's accuracy cost), ``layers`` (per-layer
times), ``machine``, ``startup`` (load to first detection), ``run`` (the rounds),
``report``.
"""
from .cases import ALL_CASES, CASES, OURS, PEERS
from .options import DEFAULT_MODELS, BenchOptions
from .report import TARGETS
from .run import bench

__all__ = ["ALL_CASES", "CASES", "OURS", "PEERS", "DEFAULT_MODELS", "TARGETS", "BenchOptions",
           "bench"]
