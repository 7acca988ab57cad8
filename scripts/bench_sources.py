#!/usr/bin/env python3
"""Many sources through one network against one process per source (a script, not a test).

For N sources, in the same measurement (rounds alternate the order):

- batched: one process runs the N sources through one Detector built for batches of N
  (``detector.load(..., max_batch=N)``, the pipeline's many-source mode, as
  ``detector detect SRC1 ... SRCN`` does it);
- separate: N processes, one source each, started together (each as ``detector detect SRC``).

Every process loads its model, then waits at a barrier, so that loading is not timed and all
start at once. Each source writes JSON Lines to /dev/null (the output stage runs, nothing is
kept). Reported per configuration: total frames per second over the sources (all frames /
the span from the first start to the last end), per-source p50/p95 end-to-end latency
(capture -> every sink had the frame), and the network time per call; the ratio batched /
separate is taken per round, the median over rounds reported.

Sources: 640x480 mp4 files written here (every frame processed, as fast as they go), and
looping live sources: the same files read in a loop at their frame rate like a camera (newest
frame only), for a fixed time.

    python scripts/bench_sources.py                                  # files 1 2 4 8, live 4
    python scripts/bench_sources.py --files 4 --live 0 --rounds 5 --json sources.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import detector                                                    # noqa: E402
from detector.stream.pipeline import Feed, Pipeline               # noqa: E402
from detector.stream.sinks import JsonLinesSink                    # noqa: E402
from detector.stream.sources import (Captured, Source, SourceOptions,  # noqa: E402
                                     open_source)


def synth_video(path: str, frames: int, seed: int, w: int = 640, h: int = 480,
                fps: float = 30.0) -> None:
    """A textured, moving 640x480 clip (different per seed), so that decoding costs what a
    camera's would."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    for i in range(frames):
        img = np.roll(base, 4 * i, axis=1).copy()
        cv2.circle(img, ((40 + 9 * i) % w, h // 2), 60, (0, 200, 255), -1)
        writer.write(img)
    writer.release()


class LoopingVideo(Source):
    """A video file read in a loop at its frame rate, like a camera: frame k is due at
    ``t0 + k / fps``; a frame is never delivered early."""

    kind = "looping"
    live = True

    def __init__(self, path: str, fps: float):
        super().__init__(f"loop:{path}", SourceOptions())
        self.path, self.fps = path, fps
        self._cap = None
        self._t0 = 0.0
        self._n = 0

    def open(self) -> None:
        self._cap = cv2.VideoCapture(self.path)
        self._t0, self._n = time.perf_counter(), 0

    def read(self):
        self._n += 1
        delay = self._t0 + self._n / self.fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ok, img = self._cap.read()
        if not ok:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self._cap.read()
        return Captured(img, self.text) if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ---- a worker process ------------------------------------------------------------------------

def worker(spec: dict) -> None:
    """Load, signal ready, wait for go, run the sources, write the results."""
    det = detector.load(spec["model"], img_size=spec["img_size"], backend=spec["backend"],
                        max_batch=len(spec["sources"]), **spec["options"])
    if spec["live"]:
        sources = [LoopingVideo(p, spec["fps"]) for p in spec["sources"]]
    else:
        sources = [open_source(p) for p in spec["sources"]]
    feeds = [Feed(s, [JsonLinesSink(os.devnull)], f"s{i}") for i, s in enumerate(sources)]
    open(spec["ready"], "w").close()
    while not os.path.exists(spec["go"]):
        time.sleep(0.002)
    for s in sources:
        s.open()
    pipe = Pipeline(det, feeds=feeds)
    timer = None
    if spec["live"]:
        timer = threading.Timer(spec["seconds"], pipe.stop, args=("time",))
        timer.start()
    t_start = time.time()
    stats = pipe.run()
    t_end = time.time()
    if timer is not None:
        timer.cancel()
    lanes = [{"processed": lane.stats.processed, "read": lane.stats.read,
              "dropped": lane.stats.dropped, "e2e": lane.stats.latency("end_to_end"),
              "network": lane.stats.latency("network")} for lane in pipe.lanes]
    result = {"t_start": t_start, "t_end": t_end, "lanes": lanes, "backend": det.backend,
              "precision": det.precision, "max_batch": det.max_batch,
              "batch_ms": stats.latency("batch") if stats.batches else
              stats.latency("network"), "mean_batch": (stats.batched_frames / stats.batches
                                                       if stats.batches else 1.0)}
    with open(spec["out"], "w") as f:
        json.dump(result, f)


# ---- the parent ------------------------------------------------------------------------------

def run_config(args, paths: List[str], live: bool, separate: bool, tmp: str, tag: str) -> dict:
    """One configuration, once: the sources in one process, or one process each."""
    groups = [[p] for p in paths] if separate else [paths]
    go = os.path.join(tmp, f"{tag}.go")
    specs, procs = [], []
    for i, group in enumerate(groups):
        spec = {"model": args.model, "img_size": args.img_size, "backend": args.backend,
                "options": {"precision": args.precision} if args.precision else {},
                "sources": group, "live": live, "fps": args.live_fps,
                "seconds": args.live_seconds, "ready": os.path.join(tmp, f"{tag}.{i}.ready"),
                "go": go, "out": os.path.join(tmp, f"{tag}.{i}.json")}
        specs.append(spec)
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)]))
    while not all(os.path.exists(s["ready"]) for s in specs):
        if any(p.poll() not in (None, 0) for p in procs):
            raise SystemExit("a worker failed to start")
        time.sleep(0.01)
    open(go, "w").close()
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a worker failed")
    results = [json.load(open(s["out"])) for s in specs]
    span = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
    lanes = [lane for r in results for lane in r["lanes"]]
    frames = sum(lane["processed"] for lane in lanes)
    return {"fps": frames / span, "frames": frames, "span_s": span,
            "e2e_p50": [lane["e2e"]["p50"] for lane in lanes],
            "e2e_p95": [lane["e2e"]["p95"] for lane in lanes],
            "dropped": sum(lane["dropped"] for lane in lanes),
            "batch_ms_p50": statistics.median(r["batch_ms"]["p50"] for r in results),
            "mean_batch": statistics.median(r["mean_batch"] for r in results),
            "backend": f"{results[0]['backend']} {results[0]['precision']}"}


def measure(args, paths: List[str], live: bool, tmp: str) -> dict:
    """Batched and separate, ``rounds`` times (the order alternates); per-round ratios."""
    rows = []
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        got = {}
        for separate in order:
            tag = f"{'live' if live else 'files'}{len(paths)}-r{r}-{'sep' if separate else 'one'}"
            got["separate" if separate else "batched"] = run_config(args, paths, live,
                                                                    separate, tmp, tag)
        b, s = got["batched"], got["separate"]
        rows.append({"batched": b, "separate": s, "fps_ratio": b["fps"] / s["fps"]})
        print(f"  round {r + 1}: batched {b['fps']:.1f} fps (mean batch {b['mean_batch']:.2f}, "
              f"call {b['batch_ms_p50']:.1f} ms, e2e p95 max {max(b['e2e_p95']):.0f} ms), "
              f"separate {s['fps']:.1f} fps (e2e p95 max {max(s['e2e_p95']):.0f} ms): "
              f"{b['fps'] / s['fps']:.2f}x", flush=True)
    return summarize(rows, len(paths), live)


def summarize(rows: List[dict], n: int, live: bool) -> dict:
    def med(side: str, key: str):
        return statistics.median(row[side][key] for row in rows)

    def lat(side: str, key: str) -> List[float]:
        """Per source, the median over rounds."""
        return [round(statistics.median(row[side][key][i] for row in rows), 1)
                for i in range(n)]

    out = {"sources": n, "live": live, "rounds": len(rows),
           "fps_ratio": round(statistics.median(row["fps_ratio"] for row in rows), 3),
           "fps_ratio_rounds": [round(row["fps_ratio"], 3) for row in rows]}
    for side in ("batched", "separate"):
        out[side] = {"fps": round(med(side, "fps"), 2), "e2e_p50_ms": lat(side, "e2e_p50"),
                     "e2e_p95_ms": lat(side, "e2e_p95"),
                     "network_call_ms_p50": round(med(side, "batch_ms_p50"), 2),
                     "mean_batch": round(med(side, "mean_batch"), 2),
                     "dropped": int(med(side, "dropped")), "backend": rows[0][side]["backend"]}
    b = out["batched"]
    out["batched_p95_over_call"] = round(max(b["e2e_p95_ms"]) / b["network_call_ms_p50"], 2)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="random:yolov2-tiny-voc-fastdsc")
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--backend", default=None, help="default: what detector.load picks")
    p.add_argument("--precision", default=None)
    p.add_argument("--files", default="1,2,4,8", help="numbers of video files (comma list)")
    p.add_argument("--frames", type=int, default=90, help="frames per video file")
    p.add_argument("--live", type=int, default=4, help="looping live sources (0: none)")
    p.add_argument("--live-seconds", type=float, default=15.0)
    p.add_argument("--live-fps", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    counts = [int(x) for x in args.files.split(",") if x.strip()]
    most = max(counts + [args.live])
    load = os.getloadavg()
    results: Dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.processor() or
        platform.machine(), "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in load],
        "model": args.model, "img_size": args.img_size, "frames_per_file": args.frames,
        "live_seconds": args.live_seconds, "live_fps": args.live_fps, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"cam{i}.mp4") for i in range(most)]
        for i, p in enumerate(paths):
            synth_video(p, args.frames, seed=i)
        # build the caches (graphs, measured choices) once, before any worker needs them
        detector.load(args.model, img_size=args.img_size, backend=args.backend, max_batch=most,
                      **({"precision": args.precision} if args.precision else {}))
        for n in counts:
            print(f"{n} video file{'s' if n > 1 else ''} ({args.frames} frames each):",
                  flush=True)
            results["runs"].append(measure(args, paths[:n], False, tmp))
        if args.live:
            print(f"{args.live} looping live sources at {args.live_fps:g} fps, "
                  f"{args.live_seconds:g} s:", flush=True)
            results["runs"].append(measure(args, paths[:args.live], True, tmp))
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def print_table(results: dict) -> None:
    print(f"\n{results['model']} {results['img_size']} px; load {results['load_before']} -> "
          f"{results['load_after']}")
    print("| sources | batched fps | separate fps | batched / separate | batched e2e p50 / p95 "
          "ms (per source) | separate e2e p50 / p95 ms | batched call ms | p95 / call |")
    print("|---|---:|---:|---:|---|---|---:|---:|")
    for r in results["runs"]:
        b, s = r["batched"], r["separate"]
        what = f"{r['sources']} {'live (looping)' if r['live'] else 'files'}"
        cells = [what, f"{b['fps']:.1f}", f"{s['fps']:.1f}", f"**{r['fps_ratio']:.2f}x**",
                 " ".join(f"{p:.0f}/{q:.0f}" for p, q in zip(b["e2e_p50_ms"], b["e2e_p95_ms"])),
                 " ".join(f"{p:.0f}/{q:.0f}" for p, q in zip(s["e2e_p50_ms"], s["e2e_p95_ms"])),
                 f"{b['network_call_ms_p50']:.1f} ({b['mean_batch']:.2f} frames)",
                 f"{r['batched_p95_over_call']:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
