"""A benchmark run: build every case, time them in interleaved rounds, report.

Every case (a model at an input size run one way) is built first and warmed up; then all
cases run in rounds, in a new shuffled order each round, so machine noise hits them alike
(``detector.timing.time_interleaved``). The GEMM peak is sampled between the rounds.
"""
from __future__ import annotations

import datetime
import sys
import tempfile
from typing import List

from ..engine.frames import synthetic_frame
from ..timing import calls_per_round, time_interleaved
from .case import FRAME_H, FRAME_SEED, FRAME_W, Case, log
from .cases import build_cases
from .layers import ort_layers
from .machine import Roofline, load_average, machine_info
from .options import BenchOptions
from .report import print_report, summarise, targets, write_json
from .startup import startup
from .subject import Records, Subject

# A pause before each case's calls in a round. Without it a case starts while the previous
# one's thread pool still spins (ORT's default sessions keep their workers busy-waiting after
# a run, OpenCV's pool too) and takes a core from it; our adaptive runner then measures two
# threads as slow and drops to one for a while. A deployment runs one model, so each case
# gets a settled CPU.
SETTLE_S = 0.02


def bench(opts: BenchOptions, out=None) -> dict:
    """Run the benchmark ``opts`` asks for; print the table to ``out`` (stdout) and return
    the JSON record (also written to ``opts.json_out``). Cases that cannot run here are
    listed in ``skipped`` with the reason; a run where none can run reports just that."""
    out = out or sys.stdout
    opts.check()
    names = opts.cases()
    started = datetime.datetime.now().astimezone()
    load_before = load_average()
    frame = synthetic_frame(FRAME_W, FRAME_H, FRAME_SEED)
    records, skipped, subjects, cases = Records(), [], [], []
    with tempfile.TemporaryDirectory(prefix="fastdsc-bench-") as work:
        for size in dict.fromkeys(opts.sizes):
            for m in dict.fromkeys(opts.models):
                s = Subject(m, size, frame, names, work, records, opts.cache_dir,
                            opts.threads, opts.tune)
                log(f"building {s.tag}: {', '.join(names)}")
                subjects.append(s)
                cases += build_cases(s, names, skipped)
        roofline = {}
        if cases:
            log("measuring the GEMM peak")
            roof = Roofline()
            run_rounds(cases, opts, roof)
            roofline = roof.record()
        else:
            log("nothing to run: every case was skipped")
        result = {"command": opts.command, "date": started.isoformat(timespec="seconds"),
                  "machine": machine_info(), "threads": opts.threads or None,
                  "rounds": opts.rounds, "warmup": opts.warmup,
                  "frame": {"width": FRAME_W, "height": FRAME_H, "seed": FRAME_SEED,
                            "kind": "synthetic street scene (detector.engine.frames)"},
                  "load_average": {"before": load_before, "after": load_average()},
                  "roofline": roofline,
                  "results": summarise(cases, roofline.get("peak_gflops", 0.0)),
                  "skipped": skipped, "pointwise": records.pointwise, "int8": records.int8,
                  "goals": targets(cases)}
        if opts.layers:
            add_layers(result, subjects, cases, opts)
    if opts.startup:
        result["startup"] = startup(opts.startup)
    print_report(result, out)
    if opts.json_out:
        write_json(result, opts.json_out)
    return result


def run_rounds(cases: List[Case], opts: BenchOptions, roof: Roofline) -> None:
    """Warm each case up and pick its calls per round, then run all of them interleaved,
    each after a ``SETTLE_S`` pause; the GEMM peak is sampled after each round. Fills
    ``Case.times``."""
    iters = {}
    for i, c in enumerate(cases):
        log(f"warm-up {i + 1}/{len(cases)}: {c.key}")
        iters[c.key] = calls_per_round(c.fn, opts.warmup, opts.target_s)

    def between(r: int, seconds: float) -> None:
        roof.sample()
        log(f"round {r + 1}/{opts.rounds} ({seconds:.1f} s)")
    times = time_interleaved({c.key: c.fn for c in cases}, opts.rounds, iters, warmup=0,
                             settle_s=SETTLE_S, between=between)
    for c in cases:
        c.times = times[c.key]


def add_layers(result: dict, subjects: List[Subject], cases: List[Case],
               opts: BenchOptions) -> None:
    """Per-layer times: ORT's profiler per model and size (``layers``) in a run with CPU
    cases, and the kernel engine's per-op times for the cases that have them
    (``cuda_layers``, by case)."""
    if any(c.device == "cpu" for c in cases):
        result["layers"] = {}
        for s in subjects:
            log(f"per-layer profile {s.tag}")
            try:
                result["layers"][s.tag] = ort_layers(s.plan, opts.cache_dir, opts.threads)
            except ImportError as e:
                result["skipped"].append({"model": s.name, "size": s.size, "impl": "layers",
                                          "reason": str(e)})
    for c in cases:
        if c.timed.layers is not None:
            log(f"per-op kernel times {c.key}")
            result.setdefault("cuda_layers", {})[c.key] = c.timed.layers()
