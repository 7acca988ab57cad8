#!/usr/bin/env python3
"""Benchmark the detection pipeline against the network alone (a script, not a test).

1. File throughput: a 640x480 video file written here with OpenCV goes through the full
   pipeline (decode -> preprocess -> network -> decode+NMS -> sinks); compared, in the same
   run, with the network's own throughput (``detector.forward`` on one preprocessed frame in a
   loop). Rounds alternate network / pipeline so that both see the same machine state.
   Goal: pipeline >= 95% of the network. Also reported: the share of the pipeline's wall time
   the network was running ("network busy"): near 100% means it never waited for a frame.
2. Live latency: a simulated 30 fps live source (GStreamer's videotestsrc is-live=true through
   the gst-launch path, or a paced in-process source without GStreamer) with a model slower
   than the camera. Goal: p95 end-to-end latency (capture -> output) <= 2 model frame times
   (the network's median time).

    python scripts/bench_pipeline.py                       # defaults below
    python scripts/bench_pipeline.py --backend torch --json bench.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detector                                                    # noqa: E402
from detector.engine.model_file import random_if_spec              # noqa: E402
from detector.host import logical_cpus                             # noqa: E402
from detector.stream.pipeline import Pipeline                      # noqa: E402
from detector.stream.sinks import JsonLinesSink, VideoFileSink     # noqa: E402
from detector.stream.sources import (Captured, Source, SourceOptions,  # noqa: E402
                                     open_source)


def synth_video(path: str, frames: int, w: int = 640, h: int = 480, fps: float = 30.0) -> None:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    base = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    for i in range(frames):
        img = np.roll(base, 4 * i, axis=1).copy()
        cv2.circle(img, ((40 + 9 * i) % w, h // 2), 60, (0, 200, 255), -1)
        writer.write(img)
    writer.release()


def network_fps(det, frame: np.ndarray, n: int) -> float:
    blob, _ = det.preprocess(frame)
    blob = np.array(blob, copy=True)
    for _ in range(3):
        det.forward(blob)
    t = time.perf_counter()
    for _ in range(n):
        det.forward(blob)
    return n / (time.perf_counter() - t)


def pipeline_fps(det, video: str, sinks) -> dict:
    stats = Pipeline(det, open_source(video), sinks).run()
    busy = sum(stats.samples["network"]) / 1000.0
    return {"fps": stats.processed / stats.elapsed, "frames": stats.processed,
            "dropped": stats.dropped, "network_busy": busy / stats.elapsed}


class PacedSource(Source):
    """A simulated camera without GStreamer: a new frame every 1/fps s, like a sensor."""

    kind = "paced"
    live = True

    def __init__(self, fps: float, w: int = 640, h: int = 480):
        super().__init__(f"paced:{fps:g}fps", SourceOptions())
        self.fps, self.size = fps, (w, h)
        self._t0 = None
        self._n = 0
        self._img = np.full((h, w, 3), 127, np.uint8)

    def open(self):
        self._t0 = time.perf_counter()

    def read(self):
        self._n += 1
        due = self._t0 + self._n / self.fps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return Captured(self._img.copy(), self.text)


def live_latency(det, seconds: float, fps: int) -> dict:
    if shutil.which("gst-launch-1.0"):
        src = open_source(f"gst:videotestsrc is-live=true ! video/x-raw,width=640,height=480,"
                          f"framerate={fps}/1")
    else:
        src = PacedSource(fps)
        src.open()
    kind = src.kind
    pipe = Pipeline(det, src, [])
    import threading
    timer = threading.Timer(seconds, pipe.stop, args=("time",))
    timer.start()
    stats = pipe.run()
    timer.cancel()
    net = stats.latency("network")
    e2e = stats.latency("end_to_end")
    return {"source": kind, "camera_fps": fps, "seconds": round(stats.elapsed, 2),
            "read": stats.read, "processed": stats.processed, "dropped": stats.dropped,
            "network_ms": net, "end_to_end_ms": e2e,
            "p95_e2e_over_model_time": round(e2e["p95"] / net["p50"], 3)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="yolov2-tiny-voc-fastdsc",
                   help="file test model (zoo name; default yolov2-tiny-voc-fastdsc)")
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--backend", default=None, help="default: the fastest available")
    p.add_argument("--frames", type=int, default=90, help="frames in the 640x480 test video")
    p.add_argument("--rounds", type=int, default=7, help="network/pipeline rounds (median)")
    p.add_argument("--live-model", default="yolov2-voc-fastdsc",
                   help="live test model, slower than the camera (default yolov2-voc-fastdsc)")
    p.add_argument("--live-img-size", type=int, default=416)
    p.add_argument("--live-seconds", type=float, default=20.0)
    p.add_argument("--camera-fps", type=int, default=30)
    p.add_argument("--json", help="write the results as JSON")
    return p.parse_args(argv)


def file_round(det, frame, video: str, tmp: str, n: int):
    """One round: the pipeline without sinks, then with JSONL + video sinks, each bracketed
    by network-only runs (the ratio is taken within the round). Returns the round's row and
    the three network-only fps."""
    n0 = network_fps(det, frame, n)
    run = pipeline_fps(det, video, [])
    bare = run["fps"]
    n1 = network_fps(det, frame, n)
    sinks = [JsonLinesSink(os.path.join(tmp, "d.jsonl")),
             VideoFileSink(os.path.join(tmp, "out.mp4"), 30)]
    full = pipeline_fps(det, video, sinks)["fps"]
    n2 = network_fps(det, frame, n)
    row = {"network_fps": (n0 + n1) / 2, "pipeline_fps": bare,
           "ratio": bare / ((n0 + n1) / 2), "network_busy": run["network_busy"],
           "with_sinks_fps": full, "with_sinks_ratio": full / ((n1 + n2) / 2)}
    return row, (n0, n1, n2)


def file_test(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "bench640x480.mp4")
        synth_video(video, args.frames)
        cap = cv2.VideoCapture(video)
        _, frame = cap.read()
        cap.release()
        det = detector.load(random_if_spec(args.model), img_size=args.img_size, backend=args.backend)
        print(f"file: {args.model} {args.img_size}px backend {det.backend}, 640x480 video, "
              f"{args.frames} frames", flush=True)
        # Each pipeline run is bracketed by two network-only runs; the ratio is per round and
        # the median over rounds is reported (robust to other load on the machine).
        rows = []
        for r in range(args.rounds):
            row, (n0, n1, n2) = file_round(det, frame, video, tmp, args.frames)
            rows.append(row)
            print(f"  round {r + 1}: network {n0:.1f} / {n1:.1f} / {n2:.1f} fps, pipeline "
                  f"{row['pipeline_fps']:.1f} fps ({100 * row['ratio']:.1f}%, network busy "
                  f"{100 * row['network_busy']:.1f}% of the time), pipeline + JSONL + video "
                  f"{row['with_sinks_fps']:.1f} fps ({100 * row['with_sinks_ratio']:.1f}%)",
                  flush=True)

    def med(key):
        return statistics.median(row[key] for row in rows)

    f = {"model": args.model, "img_size": args.img_size, "backend": det.backend,
         "frames": args.frames, "rounds": args.rounds,
         "network_fps": round(med("network_fps"), 2),
         "pipeline_fps": round(med("pipeline_fps"), 2),
         "pipeline_over_network": round(med("ratio"), 4),
         "network_busy_in_pipeline": round(med("network_busy"), 4),
         "pipeline_with_sinks_fps": round(med("with_sinks_fps"), 2),
         "pipeline_with_sinks_over_network": round(med("with_sinks_ratio"), 4),
         "rounds_detail": rows}
    print(f"  median: network {f['network_fps']:.1f} fps, pipeline {f['pipeline_fps']:.1f} "
          f"fps, pipeline/network {100 * f['pipeline_over_network']:.1f}% (network busy "
          f"{100 * f['network_busy_in_pipeline']:.1f}%); with JSONL + "
          f"video {f['pipeline_with_sinks_fps']:.1f} fps "
          f"({100 * f['pipeline_with_sinks_over_network']:.1f}%)", flush=True)
    return f


def live_test(args) -> dict:
    det = detector.load(random_if_spec(args.live_model), img_size=args.live_img_size, backend=args.backend)
    print(f"live: {args.live_model} {args.live_img_size}px backend {det.backend}, "
          f"{args.camera_fps} fps 640x480 source, {args.live_seconds:g} s", flush=True)
    live = live_latency(det, args.live_seconds, args.camera_fps)
    live.update(model=args.live_model, img_size=args.live_img_size, backend=det.backend)
    print(f"  {live['source']} source: read {live['read']}, processed {live['processed']}, "
          f"dropped {live['dropped']}; network p50 {live['network_ms']['p50']:.1f} ms; "
          f"end-to-end p50 {live['end_to_end_ms']['p50']:.1f} ms, p95 "
          f"{live['end_to_end_ms']['p95']:.1f} ms = {live['p95_e2e_over_model_time']:.2f} "
          f"model frame times", flush=True)
    return live


def main(argv=None) -> int:
    args = parse_args(argv)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
              "cpus": logical_cpus(), "python": platform.python_version(),
              "opencv": cv2.__version__}
    result["file"] = file_test(args)
    result["live"] = live_test(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
