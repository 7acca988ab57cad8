"""Many sources through one network: real video files written by OpenCV, live GStreamer
sources killed mid-run, a camera that freezes; in-process and as ``detector detect`` runs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

import detector
from conftest import REPO, assert_user_error, cli_env, run_cli
from detector.stream.outputs import SinkSpec, per_source
from detector.stream.pipeline import Feed, Pipeline
from detector.stream.sinks import JsonLinesSink, Label, Sink
from detector.stream.source_list import read_source_list, source_names
from detector.stream.sources import Captured, Source, SourceOptions, open_source, parse_source
from stream_helpers import (MODEL, SIZE, count_video_frames, gst_live, requires_gst,
                            write_video)

MODEL_ARGS = ("--weights", MODEL, "--img-size", str(SIZE))
DEMO = os.path.join(REPO, "weights", "demo-synth-tiny-fastdsc.safetensors")


@pytest.fixture(scope="module")
def det():
    return detector.load(MODEL, img_size=SIZE, conf=0.02, max_batch=3)


class Collect(Sink):
    """Keeps what the pipeline outputs, with the time each frame came out."""

    def __init__(self, on_write=None):
        self.frames = []
        self.on_write = on_write
        self.closes = 0

    def write(self, frame):
        self.frames.append((frame.index, frame.name, list(frame.detections), time.monotonic()))
        if self.on_write:
            self.on_write(frame, len(self.frames))

    def close(self):
        self.closes += 1

    def indices(self, name=None):
        return [f[0] for f in self.frames if name is None or f[1] == name]


def same_detections(a, b):
    """Equal up to float rounding (a batch may run other kernels than a single frame)."""
    assert len(a) == len(b)
    for da, db in zip(a, b):
        assert (da.class_id, da.class_name) == (db.class_id, db.class_name)
        assert abs(da.score - db.score) < 1e-4
        np.testing.assert_allclose(da.box, db.box, atol=0.05)


def video_frames(path):
    cap = cv2.VideoCapture(path)
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


# ---- in-process ---------------------------------------------------------------------------

def test_files_every_frame_once_in_order_through_batches(det, tmp_path):
    specs = [("a.mp4", 12, 160, 120), ("b.avi", 7, 200, 100), ("c.mp4", 9, 96, 160)]
    paths = [write_video(str(tmp_path / n), k, w, h) for n, k, w, h in specs]
    own = [Collect() for _ in paths]
    shared = Collect()
    feeds = [Feed(open_source(p), [c, shared], name) for p, c, name in zip(paths, own, "abc")]
    pipe = Pipeline(det, feeds=feeds)
    stats = pipe.run()
    assert pipe.stop_reason == "end of stream"
    for c, (_, k, _, _), name in zip(own, specs, "abc"):
        assert c.indices() == list(range(k)) and c.closes == 1
        assert shared.indices(name) == list(range(k))
    assert shared.closes == 1                              # one sink of several sources
    assert (stats.read, stats.processed, stats.dropped) == (28, 28, 0)
    assert [lane.stats.processed for lane in pipe.lanes] == [12, 7, 9]
    assert stats.batched_frames == 28 and stats.batches < 28    # frames shared network calls
    assert max(stats.batch_ms) > 0
    for c, path in zip(own, paths):                        # each frame's own detections
        for (_, _, dets, _), img in zip(c.frames, video_frames(path)):
            same_detections(dets, det(img))
    assert sum(len(f[2]) for c in own for f in c.frames) > 0


class FrozenCamera(Source):
    """A test-only live camera that stops delivering (read blocks) until ``thaw`` is set."""

    kind = "test-camera"
    live = True

    def __init__(self):
        super().__init__("frozen-camera", SourceOptions())
        self.thaw = threading.Event()
        self.reads = 0

    def open(self):
        pass

    def read(self):
        if self.reads >= 2:
            self.thaw.wait(30)
        self.reads += 1
        time.sleep(0.01)
        return Captured(np.full((48, 64, 3), 40 + self.reads % 200, np.uint8), self.text)

    def interrupt(self):
        self.thaw.set()


def test_a_frozen_camera_does_not_hold_up_the_other_sources(det, tmp_path):
    cam = FrozenCamera()
    files = [write_video(str(tmp_path / f"{n}.avi"), 15) for n in "ab"]
    pipe = None
    done = []

    def file_done(frame, n):
        if n == 15:
            done.append(frame.name)
            if len(done) == 2:
                cam.thaw.set()                 # both files finished while the camera froze

    def camera_frames(frame, n):
        if n == 6:
            pipe.stop("test")

    sinks = {"cam": Collect(camera_frames), "a": Collect(file_done), "b": Collect(file_done)}
    feeds = [Feed(cam, [sinks["cam"]], "cam")] + \
        [Feed(open_source(p), [sinks[n]], n) for p, n in zip(files, "ab")]
    pipe = Pipeline(det, feeds=feeds)
    pipe.run()
    assert sorted(done) == ["a", "b"]
    assert sinks["a"].indices() == sinks["b"].indices() == list(range(15))
    assert len(sinks["cam"].frames) >= 6 and pipe.stop_reason == "test"
    # the camera's first frames came out before the files ended, the rest after it thawed
    first_file_end = min(sinks[n].frames[-1][3] for n in "ab")
    assert sinks["cam"].frames[0][3] < first_file_end < sinks["cam"].frames[-1][3]


class CountingCamera(Source):
    """A test-only camera far faster than the model; each frame carries its camera's tag and
    its number in its first pixels."""

    kind = "test-camera"
    live = True

    def __init__(self, tag: int):
        super().__init__(f"cam-{tag}", SourceOptions())
        self.tag = tag
        self.reads = 0

    def open(self):
        pass

    def read(self):
        img = np.full((48, 64, 3), 90, np.uint8)
        i = self.reads
        img[0, 0] = (i & 255, (i >> 8) & 255, (i >> 16) & 255)
        img[0, 1] = self.tag
        self.reads += 1
        time.sleep(0.001)
        return Captured(img, self.text)


class Observed:
    """The detector, observed when the inference thread letterboxes a frame: how many newer
    frames its camera had read by then, and into which batch slot."""

    def __init__(self, det, cameras):
        self._det, self._cameras = det, cameras
        self.newer = [[] for _ in cameras]
        self.slots = []

    def __getattr__(self, name):
        return getattr(self._det, name)

    def preprocess(self, frame, slot=None):
        cam = self._cameras[int(frame[0, 1, 0])]
        index = int(frame[0, 0, 0]) | int(frame[0, 0, 1]) << 8 | int(frame[0, 0, 2]) << 16
        self.newer[cam.tag].append(cam.reads - 1 - index)
        self.slots.append(slot)
        return self._det.preprocess(frame) if slot is None else \
            self._det.preprocess(frame, slot=slot)


def test_live_sources_batch_their_newest_frames(det):
    cams = [CountingCamera(0), CountingCamera(1)]
    observed = Observed(det, cams)
    collects = [Collect() for _ in cams]
    feeds = [Feed(c, [k], c.text) for c, k in zip(cams, collects)]
    pipe = Pipeline(observed, feeds=feeds, max_frames=20)
    stats = pipe.run()
    assert pipe.stop_reason == "max-frames"
    assert [lane.stats.processed for lane in pipe.lanes] == [20, 20]
    assert stats.dropped > 0 and stats.read == stats.processed + stats.dropped
    assert stats.batched_frames / stats.batches > 1.5          # mostly both cameras a call
    assert 1 in observed.slots                                 # letterboxed into its slot
    for c in collects:
        idx = c.indices()
        assert idx == sorted(idx) and idx[-1] >= 20           # newest frames, with gaps
    # no backlog: a call takes each camera's newest frame; only what the camera read while
    # the frames before it in the batch were letterboxed can be newer
    for newer in observed.newer:
        assert len(newer) >= 20 and max(newer) <= 5, newer


@requires_gst
def test_a_live_source_killed_mid_run_reconnects_while_the_files_go_on(det, tmp_path):
    warnings, when = [], {}

    def warn(message):
        warnings.append(message)
        when.setdefault(message.split(": ")[-1], time.monotonic())

    live = open_source(gst_live(fps=30), warn=warn)
    files = [write_video(str(tmp_path / f"{n}.mp4"), 60) for n in "ab"]
    killed = []
    pipe = None

    def on_live(frame, n):
        if n == 3:
            killed.append(time.monotonic())
            os.kill(live.pid, signal.SIGKILL)
        if n >= 12 and all(len(c.frames) == 60 for c in (fa, fb)):
            pipe.stop("test")

    lv, fa, fb = Collect(on_live), Collect(), Collect()
    jl = str(tmp_path / "all.jsonl")
    shared = JsonLinesSink(jl)
    feeds = [Feed(live, [lv, shared], "live"), Feed(open_source(files[0]), [fa, shared], "a"),
             Feed(open_source(files[1]), [fb, shared], "b")]
    pipe = Pipeline(det, feeds=feeds, warn=warn, backoff=(0.5, 1.0))
    pipe.run()
    assert pipe.stop_reason == "test"
    assert fa.indices() == fb.indices() == list(range(60))
    assert pipe.lanes[0].stats.reconnects >= 1, warnings
    assert any("killed by signal 9" in w for w in warnings)
    # while the dead source waited to reconnect (>= 0.5 s), the files went on
    back = when["reconnected"]
    during = [t for c in (fa, fb) for (_, _, _, t) in c.frames if killed[0] < t < back]
    assert back - killed[0] >= 0.5 and len(during) >= 2, (back - killed[0], len(during))
    records = [json.loads(line) for line in open(jl)]
    by_source = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r["frame"])
    assert by_source[files[0]] == by_source[files[1]] == list(range(60))
    assert len(by_source[live.text]) == len(lv.frames)
    assert live.pid is None


@requires_gst
def test_a_source_that_ends_mid_run_leaves_the_others_running(det, tmp_path):
    warnings = []
    dying = open_source(gst_live(fps=60), SourceOptions(live=False), warnings.append)
    files = [write_video(str(tmp_path / f"{n}.avi"), 30) for n in "ab"]

    def kill(frame, n):
        if n == 4:
            os.kill(dying.pid, signal.SIGKILL)

    d, fa, fb = Collect(kill), Collect(), Collect()
    feeds = [Feed(dying, [d], "dying"), Feed(open_source(files[0]), [fa], "a"),
             Feed(open_source(files[1]), [fb], "b")]
    pipe = Pipeline(det, feeds=feeds, warn=warnings.append)
    stats = pipe.run()
    assert pipe.stop_reason == "end of stream"
    assert fa.indices() == fb.indices() == list(range(30))
    assert d.indices() == list(range(len(d.frames))) and len(d.frames) >= 4
    assert pipe.lanes[0].stats.reconnects == 0 and stats.dropped == 0
    assert any("killed by signal 9" in w for w in warnings)


# ---- names and outputs --------------------------------------------------------------------

def test_source_names_and_the_list_file(tmp_path):
    texts = ["a/clip.mp4", "b/clip.mp4", "0", "/dev/video2", "csi://1",
             "rtsp://u:p@10.0.0.2:554/stream1", "http://cam.local:8080", "imgs/*.jpg",
             "gst:videotestsrc is-live=true ! video/x-raw"]
    assert source_names(texts) == ["clip", "clip-2", "cam0", "video2", "csi1", "stream1",
                                   "cam.local", "imgs", "videotestsrc"]
    lst = tmp_path / "sources.txt"
    lst.write_text("# cameras\n  a.mp4 \n\ngst:videotestsrc is-live=true\n")
    assert read_source_list(str(lst)) == ["a.mp4", "gst:videotestsrc is-live=true"]


def test_outputs_per_source(tmp_path):
    paths = [write_video(str(tmp_path / f"{n}.avi"), 2) for n in "ab"]
    sources = [parse_source(p) for p in paths]
    specs = [SinkSpec("jsonl", "all.jsonl"), SinkSpec("video", "out-{name}.mp4"),
             SinkSpec("mot", "{name}/gt.txt"), SinkSpec("display", "0")]
    shared, each = per_source(specs, sources, ["a", "b"])
    assert [s.target for s in shared] == ["all.jsonl"]
    assert [[s.target for s in mine] for mine in each] == \
        [["out-a.mp4", "a/gt.txt", "0"], ["out-b.mp4", "b/gt.txt", "0"]]
    for kind, target in (("video", "out.mp4"), ("mot", "t.txt"), ("images", "frames/")):
        with pytest.raises(Exception, match=r"\{name\}"):
            per_source([SinkSpec(kind, target, label=Label(target))], sources, ["a", "b"])
    with pytest.raises(Exception, match="one source"):
        per_source([SinkSpec("mjpeg", "127.0.0.1:0", "127.0.0.1", 0)], sources, ["a", "b"])
    with pytest.raises(Exception, match="the input video"):
        per_source([SinkSpec("video", str(tmp_path / "{name}.avi"))], sources, ["a", "b"])
    # one source: {name} is its name, the rest as before
    _, one = per_source(specs[:2], sources[:1], ["a"])
    assert [s.target for s in one[0]] == ["all.jsonl", "out-a.mp4"]


# ---- the command line ---------------------------------------------------------------------

def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_cli_several_sources_one_process(tmp_path):
    a = write_video(str(tmp_path / "a.mp4"), 14, 160, 120, fps=12)
    b = write_video(str(tmp_path / "b.avi"), 9, 200, 100, fps=10)
    c = write_video(str(tmp_path / "c.mp4"), 5, 96, 160, fps=12)
    lst = tmp_path / "more.txt"
    lst.write_text(f"# one more\n{c}\n")
    out = tmp_path / "out"
    proc = run_cli("detect", a, b, "--sources", lst, *MODEL_ARGS, "--conf", "0.02",
                   "--json", out / "all.jsonl", "--out", f"jsonl:{out}/{{name}}.jsonl",
                   "--save", f"{out}/annotated-{{name}}.mp4", "--stats-json", out / "st.json")
    assert proc.returncode == 0, proc.stderr
    shared = read_jsonl(out / "all.jsonl")
    for path, name, n, size in ((a, "a", 14, (160, 120)), (b, "b", 9, (200, 100)),
                                (c, "c", 5, (96, 160))):
        mine = read_jsonl(out / f"{name}.jsonl")
        assert [r["frame"] for r in mine] == list(range(n))
        assert all(r["source"] == path for r in mine)
        assert [r for r in shared if r["source"] == path] == mine
        assert count_video_frames(str(out / f"annotated-{name}.mp4"))[0::2] == (n, size)
    stats = json.load(open(out / "st.json"))
    assert stats["frames"]["processed"] == 28 and stats["max_batch"] == 3
    assert stats["batches"]["mean_frames"] > 1
    assert [(s["name"], s["frames"]["processed"]) for s in stats["sources"]] == \
        [("a", 14), ("b", 9), ("c", 5)]
    for s in stats["sources"]:
        assert 0 < s["latency_ms"]["end_to_end"]["p50"] <= s["latency_ms"]["end_to_end"]["p95"]
    lines = proc.stdout.splitlines()
    assert len(lines) == 28 and {ln.split(":")[0] for ln in lines} == {"a", "b", "c"}
    assert "3 sources, up to 3 frames a network call" in proc.stderr


@pytest.mark.parametrize("args,fragments", [
    (["--save", "out.mp4"], ["--save out.mp4:", "{name}"]),
    (["--mot", "t.txt"], ["--mot t.txt:", "{name}"]),
    (["--serve", ":0"], ["--serve", "one source"]),
    (["--sources", "missing.txt"], ["missing.txt", "no such file"]),
])
def test_cli_several_sources_bad_outputs(tmp_path, args, fragments):
    a = write_video(str(tmp_path / "a.avi"), 2)
    proc = run_cli("detect", a, a, "--weights", str(tmp_path / "none.safetensors"), *args,
                   cwd=str(tmp_path))
    assert_user_error(proc, *fragments)


def test_cli_needs_a_source(tmp_path):
    assert_user_error(run_cli("detect", *MODEL_ARGS), "SOURCE")


def test_cli_track_writes_track_ids_and_mot_files(tmp_path):
    proc = run_cli("synth", tmp_path / "syn", "--train", "0", "--val", "0", "--size", "320",
                   "--seed", "2026", "--clip", "30")
    assert proc.returncode == 0, proc.stderr
    clip = str(tmp_path / "syn" / "clip.mp4")
    other = str(tmp_path / "syn" / "again.mp4")
    shutil.copy(clip, other)
    out = tmp_path / "out"
    proc = run_cli("detect", clip, other, "--weights", DEMO, "--track", "--quiet",
                   "--json", out / "t.jsonl", "--mot", f"{out}/{{name}}.txt",
                   "--save", f"{out}/{{name}}.mp4", "--stats-json", out / "st.json")
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out / "t.jsonl")
    assert len(records) == 60
    dets = [d for r in records for d in r["detections"]]
    assert dets and all(isinstance(d["track_id"], int) and d["track_id"] > 0 for d in dets)
    ids = {d["track_id"] for d in dets}
    assert len(ids) < len(dets) / 3                 # identities persist across frames
    stats = json.load(open(out / "st.json"))
    assert stats["tracks"]["started"] >= len(ids) > 0
    assert [s["name"] for s in stats["sources"]] == ["clip", "again"]
    for path, name in ((clip, "clip"), (other, "again")):
        # the MOT file holds that source's tracks as its JSON Lines give them
        mine = [r for r in records if r["source"] == path]
        assert [r["frame"] for r in mine] == list(range(30))
        want = sorted((r["frame"] + 1, d["track_id"], round(d["box"][0], 2))
                      for r in mine for d in r["detections"])
        rows = [line.split(",") for line in open(out / f"{name}.txt").read().splitlines()]
        assert want == sorted((int(f), int(i), round(float(x), 2)) for f, i, x, *_ in rows)
        assert count_video_frames(str(out / f"{name}.mp4"))[0] == 30
    # one network, the same frames: both sources get the same tracks
    assert [r["detections"] for r in records if r["source"] == clip] == \
        [r["detections"] for r in records if r["source"] == other]
    assert "tracks:" in proc.stderr


def test_cli_mot_implies_tracking(tmp_path):
    src = write_video(str(tmp_path / "in.avi"), 6)
    proc = run_cli("detect", src, *MODEL_ARGS, "--mot", tmp_path / "t.txt", "--json",
                   tmp_path / "d.jsonl", "--stats-json", tmp_path / "st.json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(tmp_path / "t.txt")
    assert "tracks" in json.load(open(tmp_path / "st.json"))
    assert "tracking" in proc.stderr


@requires_gst
def test_cli_a_camera_that_never_opens_does_not_stop_the_others(tmp_path):
    src = write_video(str(tmp_path / "a.avi"), 8)
    broken = "gst:videotestsrc is-live=true ! nosuchelement"
    st = tmp_path / "st.json"
    proc = subprocess.Popen([sys.executable, "-m", "detector", "detect", src, broken,
                             *MODEL_ARGS, "--stats-json", str(st)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    try:
        for i in range(8):                        # every frame of the file comes out
            assert proc.stdout.readline().startswith(f"a: frame {i}:"), "".join(err)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(err)
    assert "retrying while the other sources run" in text and "Traceback" not in text
    stats = json.load(open(st))
    assert [(s["name"], s["frames"]["processed"]) for s in stats["sources"]] == \
        [("a", 8), ("videotestsrc", 0)]
