"""The benchmark's results: one row per case, the targets, the printed table and the JSON.

Speed-ups are taken round by round (``timing.round_ratio`` with the median of each round)
and reported as the median over rounds, so noise that hits a round hits both sides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..timing import round_ratio
from .case import Case, log


@dataclass(frozen=True)
class Target:
    """A FastDSC model's ``frame`` case at least ``speedup`` times as fast as the ``peer``
    case, on the regular network of its family (``regular``) or on the same model."""
    family: str
    peer: str
    regular: bool
    speedup: float
    label: str             # how the comparison reads, after "<model>@<size> frame vs "


TARGETS = (
    # FastDSC-YOLOv2's frame against OpenCV-DNN running the regular YOLOv2 ...
    Target("yolov2-voc", "opencv-dnn", True, 6.0, "OpenCV-DNN {peer}"),
    # ... and tiny FastDSC's against OpenCV-DNN running the regular tiny YOLOv2;
    Target("yolov2-tiny-voc", "opencv-dnn", True, 5.0, "OpenCV-DNN {peer}"),
    # FastDSC-YOLOv2's frame no slower than bare ORT running the same graph (network only).
    Target("yolov2-voc", "ort-bare", False, 1.0,
           "bare ORT (network only) on the same graph"),
)


def ratio(peer: Case, case: Case) -> float:
    """Median over rounds of peer time / case time (> 1: the case is faster)."""
    return round_ratio(peer.times, case.times, stat=np.median)


def summarise(cases: List[Case], peak: float) -> List[dict]:
    """One row per case: times (ms), FLOP rates, and ratios to the fastest peer on the same
    device (same family and size) and to OpenCV-DNN on the regular network of the family."""
    return [_row(c, cases, peak) for c in cases]


def _row(c: Case, cases: List[Case], peak: float) -> dict:
    s = np.concatenate([np.asarray(t) for t in c.times]) * 1e3
    med = float(np.median(s))
    peers = [p for p in cases if not p.ours and p.size == c.size and p.family == c.family]
    near = [p for p in peers if p.device == c.device]
    fastest = min(near, key=lambda p: np.median(np.concatenate(p.times))) if near else None
    ocv = [p for p in peers if p.impl == "opencv-dnn" and not p.fastdsc]
    row = {"model": c.model, "size": c.size, "impl": c.impl, "ours": c.ours,
           "scope": c.scope, "device": c.device, "family": c.family, "fastdsc": c.fastdsc,
           "median_ms": med, "p90_ms": float(np.percentile(s, 90)),
           "mean_ms": float(np.mean(s)), "min_ms": float(np.min(s)), "samples": int(s.size),
           "fps": 1000.0 / med, "gflops": c.gflops, "gflops_per_s": c.gflops / (med / 1e3),
           "of_peak": (c.gflops / (med / 1e3)) / peak if peak else None,
           "roofline_ms": c.gflops / peak * 1e3 if peak else None,
           "fastest_peer": fastest.key if fastest else None,
           "vs_fastest_peer": ratio(fastest, c) if fastest else None,
           "vs_opencv_regular": ratio(ocv[0], c) if ocv else None,
           "note": c.note}
    if c.timed.info is not None:
        row.update(c.timed.info())
    return row


def targets(cases: List[Case]) -> List[dict]:
    """Each target that this run's cases can check, with the measured speed-up."""
    out = []
    for c in cases:
        if c.impl != "frame" or not c.fastdsc:
            continue
        for t in TARGETS:
            if t.family != c.family:
                continue
            peer = next((p for p in cases if p.impl == t.peer and p.size == c.size and (
                (p.family == c.family and not p.fastdsc) if t.regular else p.model == c.model)),
                None)
            if peer is None:
                continue
            v = ratio(peer, c)
            out.append({"goal": f"{c.model}@{c.size} frame vs " + t.label.format(peer=peer.model),
                        "speedup": v, "target": t.speedup, "pass": v >= t.speedup})
    return out


def write_json(result: dict, path: str) -> None:
    atomic_write_bytes(path, (json.dumps(result, indent=1) + "\n").encode())
    log(f"wrote {path}")


# ---- the printed table ---------------------------------------------------------------------------

def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_report(result: dict, out) -> None:
    """The table (stdout) and what goes with it: skips, tuning, int8, targets, layers."""
    _print_header(result, out)
    _print_rows(result["results"], out)
    _print_notes(result, out)
    for key, rows in result.get("layers", {}).items():
        _print_ort_layers(key, rows, out)
    for key, rows in result.get("cuda_layers", {}).items():
        _print_kernel_layers(key, rows, out)


def _print_header(result: dict, out) -> None:
    r = result["roofline"]
    m = result["machine"]
    print(f"# detector bench, {result['date']}: {m['cpu']}, {m['physical_cores']} cores; "
          f"onnxruntime {m['onnxruntime']}, torch {m['torch']}, OpenCV {m['opencv']}", file=out)
    la = result.get("load_average") or {}
    if la.get("before") and la.get("after"):
        print(f"# load average (1/5/15 min) before {la['before']}, after {la['after']}; "
              f"adaptive ORT threading (ort, frame) follows the load", file=out)
    print(f"# roofline (best sgemm, all cores): numpy {_f(r.get('numpy_sgemm_gflops'), '.0f')} "
          f"GFLOP/s, torch {_f(r.get('torch_sgemm_gflops'), '.0f')} GFLOP/s, torch 1 thread "
          f"{_f(r.get('torch_sgemm_1thread_gflops'), '.0f')} x cores; peak "
          f"{_f(r.get('peak_gflops'), '.0f')} GFLOP/s; {result['rounds']} "
          f"interleaved rounds; x peer = fastest peer / this (same family and size; >1 faster)",
          file=out)


def _print_rows(rows: List[dict], out) -> None:
    hdr = (f"{'model':<24} {'size':>4} {'case':<11} {'':4} {'median':>8} {'p90':>8} {'FPS':>7} "
           f"{'GFLOPs':>6} {'GFLOP/s':>7} {'%peak':>5} {'x peer':>6} {'x ocv':>6}  note")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    last = None
    for row in rows:
        grp = (row["size"], row["family"])
        if last is not None and grp != last:
            print("", file=out)
        last = grp
        print(f"{row['model']:<24} {row['size']:>4} {row['impl']:<11} "
              f"{'' if row['ours'] else 'peer':4} {row['median_ms']:8.2f} {row['p90_ms']:8.2f} "
              f"{row['fps']:7.1f} {row['gflops']:6.2f} {row['gflops_per_s']:7.1f} "
              f"{_f(row['of_peak'] and 100 * row['of_peak'], '5.0f')} "
              f"{_f(row['vs_fastest_peer'], '6.2f')} {_f(row['vs_opencv_regular'], '6.2f')}  "
              f"{row['note']}" + (f"; now {row['threading']['current']}" if "threading" in row
                                  else ""), file=out)


def _print_notes(result: dict, out) -> None:
    for s in result["skipped"]:
        print(f"skipped {s['model']}@{s['size']}/{s['impl']}: {s['reason']}", file=out)
    for k, rec in result.get("pointwise", {}).items():
        g = rec.get("graphs", {})
        if g:
            print(f"pointwise {k}: 1x1 Conv {_f(g.get('conv'), '.2f')} ms, GEMM "
                  f"{_f(g.get('matmul'), '.2f')} ms"
                  + (f", mixed {g['mixed']:.2f} ms" if "mixed" in g else "")
                  + f" -> {rec.get('chosen', 'conv')}", file=out)
    for k, acc in result.get("int8", {}).items():
        print(f"int8 {k}: raw output rel. error {acc['raw_rel_error']:.3f}, detections vs fp32 "
              f"F1 {_f(acc['detection_f1_vs_fp32'], '.3f')} ({acc['fp32_detections']} fp32 / "
              f"{acc['int8_detections']} int8, best {acc['top']}/frame at conf {acc['conf']}, "
              f"{acc['frames']} frames)", file=out)
    for g in result["goals"]:
        print(f"goal {'PASS' if g['pass'] else 'FAIL'}: {g['goal']}: {g['speedup']:.2f}x "
              f"(target {g['target']:.0f}x)", file=out)
    st = result.get("startup")
    if st:
        print(f"start-up {st['model']}: load to first detection cold "
              f"{st['cold']['load_to_first_detection_s']:.2f} s (process "
              f"{st['cold']['process_s']:.2f} s), warm {st['warm']['load_to_first_detection_s']:.2f}"
              f" s (process {st['warm']['process_s']:.2f} s)", file=out)


def _print_ort_layers(key: str, rows: List[dict], out) -> None:
    print(f"\nper-layer {key} (ORT profiler, fastest of 10 runs, ms; GEMM includes the "
          f"layout reorders it causes)", file=out)
    print(f"  {'op':<22} {'kind':<12} {'out':<16} {'GFLOPs':>7} {'conv ms':>8} "
          f"{'GEMM ms':>8} {'form':<6} {'GFLOP/s':>7}", file=out)
    for L in rows:
        shape = "x".join(map(str, L["out"])) if L["out"] else ""
        print(f"  {L['op']:<22} {L['kind']:<12} {shape:<16} {L['gflops']:7.3f} "
              f"{_f(L['conv_ms'], '8.3f')} {_f(L['gemm_ms'], '8.3f')} {L['form'] or '':<6} "
              f"{_f(L['gflops_per_s'], '7.1f')}", file=out)


def _print_kernel_layers(key: str, rows: List[dict], out) -> None:
    print(f"\nper-layer {key} (kernel engine, mean of 10 runs, ms)", file=out)
    print(f"  {'op':<22} {'kind':<12} {'kernel':<14} {'GFLOPs':>7} {'ms':>8} {'GFLOP/s':>8}",
          file=out)
    for L in rows:
        print(f"  {L['op']:<22} {L['kind']:<12} {L['path']:<14} {L['gflops']:7.3f} "
              f"{L['ms']:8.3f} {_f(L['gflops_per_s'], '8.1f')}", file=out)
