"""The output grammar (``parse_sink``/``open_sink``, the twin of the source grammar) on real
files, a real HTTP client, and ``detector detect --out`` in real subprocesses."""
from __future__ import annotations

import http.client
import json
import os
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, cli_env, run_cli
from detector.detection import Detection
from detector.errors import ParamError, UserError
from detector.stream.mjpeg import MjpegServer
from detector.stream.options import DetectOptions, OutputOptions
from detector.stream.outputs import SinkSpec, open_sink, parse_sink, requested_sinks
from detector.stream.pipeline import Frame
from detector.stream.run import DetectRun
from detector.stream.sinks import (ImageDirSink, ImageFileSink, JsonLinesSink, Label,
                                   VideoFileSink)
from detector.stream.sources import parse_source
from stream_helpers import MODEL, SIZE, count_video_frames, frame_image, write_video
from test_stream_mjpeg import read_parts

MODEL_ARGS = ("--weights", MODEL, "--img-size", str(SIZE))
DETS = [Detection((10.0, 20.0, 50.0, 60.0), 0.9, 14, "person"),
        Detection((1.0, 2.0, 3.0, 4.0), 0.5, 6, "car")]


def frame(i, w=160, h=120, origin="test", dets=()):
    f = Frame(i, frame_image(i, w, h), origin, time.perf_counter(), 0.0)
    f.detections = list(dets)
    return f


@pytest.fixture
def video(tmp_path):
    return write_video(str(tmp_path / "in.mp4"), 4)


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "one.png")
    cv2.imwrite(path, frame_image(3))
    return path


# ---- the grammar ----------------------------------------------------------------------------

def test_grammar_kinds(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    cases = {
        "out.mp4": ("video", "out.mp4"), "a/b.AVI": ("video", "a/b.AVI"),
        "x.mkv": ("video", "x.mkv"), "x.mov": ("video", "x.mov"), "x.m4v": ("video", "x.m4v"),
        "frames/": ("images", "frames/"), str(existing): ("images", str(existing)),
        "frames": ("images", "frames"), "out.jpg": ("image", "out.jpg"),
        "dets.jsonl": ("jsonl", "dets.jsonl"), "jsonl:dets.txt": ("jsonl", "dets.txt"),
        "-": ("jsonl", "-"), "jsonl:-": ("jsonl", "-"),
        "display://0": ("display", "0"), "display://2": ("display", "2"),
        "http://0.0.0.0:8080": ("mjpeg", "0.0.0.0:8080"),
        "http://:9000": ("mjpeg", "127.0.0.1:9000"),
        "http://[::1]:9001/stream.mjpg": ("mjpeg", "::1:9001"),
        "file://" + str(tmp_path / "v.mp4"): ("video", str(tmp_path / "v.mp4")),
    }
    for uri, (kind, target) in cases.items():
        spec = parse_sink(uri)
        assert (spec.kind, spec.target) == (kind, target), uri
        assert spec.label == Label(uri), uri
    assert parse_sink("-").to_stdout and not parse_sink("d.jsonl").to_stdout
    http = parse_sink("http://[::1]:9001/")
    assert (http.host, http.port) == ("::1", 9001)


@pytest.mark.parametrize("uri,fragment", [
    ("ftp://host/x.mp4", "unsupported output scheme ftp://"),
    ("rtsp://host/x", "unsupported output scheme"),
    ("out.txt", "unknown output type"),
    ("display://left", "display://N"),
    ("display://", "display://N"),
    ("http://127.0.0.1:99999", "HOST:PORT"),
    ("http://127.0.0.1", "HOST:PORT"),
    ("http://127.0.0.1:8080/other", "fixed path"),
    ("jsonl:", "path for the JSON Lines"),
    ("file://", "file://PATH"),
    ("", "empty output"),
])
def test_grammar_errors_name_the_uri(uri, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        parse_sink(uri)
    assert not isinstance(e.value, ParamError) and str(e.value).startswith(f"{uri}: " * bool(uri))
    with pytest.raises(ParamError) as e:               # asked for by a parameter: named by it
        parse_sink(uri, label=Label(uri, "outputs"))
    assert e.value.param == "outputs"
    assert e.value.render("--out").startswith(f"--out {uri}: " if uri else "--out: ")


def test_outputs_checked_against_the_source(tmp_path, video, image):
    src = parse_source(video)
    with pytest.raises(UserError, match="single-image source"):
        parse_sink(str(tmp_path / "o.jpg"), src)
    for uri in (video, "file://" + video, "jsonl:" + video):
        with pytest.raises(UserError, match="that is the input video"):
            parse_sink(uri, src)
    assert parse_sink(str(tmp_path / "o.jpg"), parse_source(image)).kind == "image"


def test_requested_sinks_shorthands_and_uris(tmp_path, video):
    opts = OutputOptions(outputs=("a.mp4", "-", "http://:0"), save="frames/", json="d.txt",
                         show=True, serve="8080")
    specs = requested_sinks(opts, parse_source(video))
    assert [(s.kind, s.target) for s in specs] == [
        ("jsonl", "d.txt"), ("images", "frames/"), ("mjpeg", "127.0.0.1:8080"),
        ("display", "0"), ("video", "a.mp4"), ("jsonl", "-"), ("mjpeg", "127.0.0.1:0")]
    assert [s.label.param for s in specs] == ["json", "save", "serve", "show", "outputs",
                                              "outputs", "outputs"]
    assert specs[0].label.text(lambda p: "--" + p) == "--json d.txt"
    assert specs[3].label.text() == "show" and specs[4].label.text() == "outputs=a.mp4"
    with pytest.raises(ParamError, match="unknown output type") as e:   # --save: files only
        requested_sinks(OutputOptions(save="d.jsonl"))
    assert e.value.param == "save"
    with pytest.raises(ParamError, match="HOST:PORT") as e:
        requested_sinks(OutputOptions(serve="localhost:http"))
    assert e.value.param == "serve" and e.value.value == "localhost:http"


@pytest.mark.parametrize("opts,fragment", [
    (OutputOptions(save="x.mp4", outputs=("x.mp4",)), "the same file"),
    (OutputOptions(json="-", outputs=("jsonl:-",)), "the same stdout"),
    (OutputOptions(show=True, outputs=("display://0",)), "the same window"),
    (OutputOptions(outputs=("d.jsonl", "./d.jsonl")), "the same file"),
])
def test_two_outputs_on_one_place(opts, fragment):
    with pytest.raises(ParamError, match=fragment) as e:
        requested_sinks(opts)
    assert e.value.param == "outputs"


# ---- opening and writing, read back ---------------------------------------------------------

@pytest.mark.parametrize("name,fourcc", [("out.mp4", "mp4v"), ("out.avi", "MJPG"),
                                         ("out.mkv", "mp4v")])
def test_video_file_written_and_read_back(tmp_path, video, name, fourcc):
    src = parse_source(video)
    src.open()
    sink = open_sink(str(tmp_path / "sub" / name), src)
    src.close()
    assert isinstance(sink, VideoFileSink) and sink.needs_overlay
    for i in range(7):
        sink.write(frame(i))
    sink.close()
    assert sink.fourcc == fourcc
    assert count_video_frames(str(tmp_path / "sub" / name)) == (7, 12.0, (160, 120))


def test_jsonl_file_and_stdout(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    for uri in (str(path), "jsonl:" + str(tmp_path / "d.txt"), "-", "jsonl:-"):
        sink = open_sink(uri)
        assert isinstance(sink, JsonLinesSink) and not sink.needs_overlay
        sink.write(frame(0, origin="cam", dets=DETS))
        sink.write(frame(1, origin="cam"))
        sink.close()
    expect = [{"frame": 0, "source": "cam", "width": 160, "height": 120,
               "detections": [d.to_json() for d in DETS]},
              {"frame": 1, "source": "cam", "width": 160, "height": 120, "detections": []}]
    for p in (path, tmp_path / "d.txt"):
        assert [json.loads(line) for line in p.read_text().splitlines()] == expect
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in out] == expect * 2


def test_image_folder_and_image_file(tmp_path, image):
    folder = open_sink(str(tmp_path / "frames") + "/")
    assert isinstance(folder, ImageDirSink)
    for i in range(3):
        folder.write(frame(i))
    folder.close()
    assert sorted(os.listdir(tmp_path / "frames")) == [f"frame_{i:06d}.jpg" for i in range(3)]
    assert cv2.imread(str(tmp_path / "frames" / "frame_000002.jpg")).shape == (120, 160, 3)
    src = parse_source(image)
    named = open_sink(str(tmp_path / "named"), src)       # image sources keep their names
    named.write(frame(0, origin=image))
    named.close()
    assert os.listdir(tmp_path / "named") == ["one.png"]
    single = open_sink(str(tmp_path / "annotated.png"), src)
    assert isinstance(single, ImageFileSink)
    single.write(frame(0, 200, 100, origin=image))
    single.close()
    assert cv2.imread(str(tmp_path / "annotated.png")).shape == (100, 200, 3)


def test_unwritable_places_name_the_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for uri in (str(blocker / "out.mp4"), str(blocker / "d.jsonl"), str(blocker / "dir/")):
        with pytest.raises(UserError) as e:
            open_sink(uri)
        assert str(e.value).startswith(uri + ": "), str(e.value)
    with pytest.raises(ParamError) as e:
        open_sink(SinkSpec("video", str(blocker / "o.mp4"), label=Label("o.mp4", "save")))
    assert e.value.param == "save" and e.value.render("--save").startswith("--save o.mp4: ")


def test_display_without_a_display_is_an_error_here(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="display://0: cannot open a window: no display"):
        open_sink("display://0")


def test_mjpeg_server_read_by_an_http_client():
    sink = open_sink("http://127.0.0.1:0", max_clients=1)
    assert isinstance(sink, MjpegServer) and sink.host == "127.0.0.1" and sink.port > 0
    assert sink.url == f"http://127.0.0.1:{sink.port}/stream.mjpg"
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            sink.write(frame(i))
            i += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=30)
        conn.request("GET", "/stream.mjpg")
        resp = conn.getresponse()
        assert resp.status == 200
        parts = read_parts(resp, 3)
        images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
        assert all(img.shape == (120, 160, 3) for img in images) and len(set(parts)) == 3
        second = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=30)
        second.request("GET", "/stream.mjpg")
        assert second.getresponse().status == 503          # max_clients=1
        second.close()
        resp.close()
        conn.close()
    finally:
        stop.set()
        feeder.join(5)
        sink.close()


def test_mjpeg_port_in_use_names_the_uri():
    first = open_sink("http://127.0.0.1:0")
    try:
        uri = f"http://127.0.0.1:{first.port}"
        with pytest.raises(UserError, match="cannot listen") as e:
            open_sink(uri)
        assert str(e.value).startswith(uri + ": ")
    finally:
        first.close()


# ---- the run as a library call ----------------------------------------------------------------

def test_run_parses_everything_before_a_model_is_needed(tmp_path, video):
    with pytest.raises(ParamError) as e:
        DetectRun(DetectOptions(video, output=OutputOptions(outputs=("x.doc",))))
    assert str(e.value).startswith("outputs=x.doc: unknown output type")
    with pytest.raises(UserError, match="no such file"):
        DetectRun(DetectOptions(str(tmp_path / "none.mp4")))
    with pytest.raises(ParamError, match="max_frames=0"):
        DetectRun(DetectOptions(video, max_frames=0))
    with pytest.raises(ParamError, match="max_clients=0"):
        DetectRun(DetectOptions(video, output=OutputOptions(max_clients=0)))
    run = DetectRun(DetectOptions(video, output=OutputOptions(outputs=("a.mp4", "-"))))
    assert run.source.kind == "video" and [s.kind for s in run.outputs] == ["video", "jsonl"]


# ---- the command line -----------------------------------------------------------------------

def test_cli_out_repeated_writes_every_output(tmp_path):
    src = write_video(str(tmp_path / "in.mp4"), 6, 160, 120, fps=12)
    out = {n: str(tmp_path / n) for n in ("a.mp4", "b.avi", "d.jsonl", "s.json")}
    proc = run_cli("detect", src, *MODEL_ARGS, "--conf", "0.02", "--out", out["a.mp4"],
                   "--out", out["d.jsonl"], "--out", str(tmp_path / "frames") + "/",
                   "--out", "http://127.0.0.1:0", "--out", "-", "--save", out["b.avi"],
                   "--json", str(tmp_path / "j.txt"), "--stats-json", out["s.json"])
    assert proc.returncode == 0, proc.stderr
    assert count_video_frames(out["a.mp4"]) == (6, 12.0, (160, 120))
    assert count_video_frames(out["b.avi"]) == (6, 12.0, (160, 120))
    records = [json.loads(line) for line in open(out["d.jsonl"])]
    assert [r["frame"] for r in records] == list(range(6))
    assert [json.loads(line) for line in proc.stdout.splitlines()] == records   # "-": stdout
    assert [json.loads(line) for line in open(tmp_path / "j.txt")] == records   # --json: any name
    assert sorted(os.listdir(tmp_path / "frames")) == [f"frame_{i:06d}.jpg" for i in range(6)]
    assert "note: serving MJPEG at http://127.0.0.1:" in proc.stderr
    assert f"note: wrote {out['a.mp4']} (6 frames" in proc.stderr
    assert f"note: wrote {out['b.avi']} (6 frames" in proc.stderr
    assert json.load(open(out["s.json"]))["frames"]["processed"] == 6


@pytest.mark.parametrize("args,fragments", [
    (["--out", "ftp://host/x"], ["--out ftp://host/x:", "unsupported output scheme"]),
    (["--out", "out.doc"], ["--out out.doc:", "unknown output type"]),
    (["--out", "display://left"], ["--out display://left:", "display://N"]),
    (["--out", "http://127.0.0.1:99999"], ["--out http://127.0.0.1:99999:", "HOST:PORT"]),
    (["--out", "IN"], ["--out", "that is the input video"]),
    (["--out", "o.png"], ["--out o.png:", "single-image source"]),
    (["--save", "o.mp4", "--out", "o.mp4"], ["--out o.mp4:", "another output writes the same"]),
    (["--json", "-", "--out", "-"], ["--out -:", "the same stdout"]),
])
def test_cli_bad_outputs_fail_before_the_model_loads(tmp_path, args, fragments):
    src = write_video(str(tmp_path / "in.mp4"), 2)
    args = [src if a == "IN" else a for a in args]
    # weights that do not exist: the output's error comes first, so nothing was loaded
    proc = run_cli("detect", src, "--weights", str(tmp_path / "none.safetensors"), *args,
                   cwd=str(tmp_path))
    assert_user_error(proc, *fragments)
    assert not os.path.exists(tmp_path / "o.mp4")


def test_cli_out_unwritable_names_the_flag(tmp_path):
    src = write_video(str(tmp_path / "in.mp4"), 2)
    assert_user_error(run_cli("detect", src, *MODEL_ARGS, "--out", "/proc/nope/out.mp4"),
                      "--out /proc/nope/out.mp4:")
    assert_user_error(run_cli("detect", src, *MODEL_ARGS, "--json", "/proc/nope/d.jsonl"),
                      "--json /proc/nope/d.jsonl:")


def test_cli_out_display_without_a_display_is_a_note(tmp_path):
    src = write_video(str(tmp_path / "in.avi"), 2)
    env = cli_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = run_cli("detect", src, *MODEL_ARGS, "--out", "display://0", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "note: --out display://0 is off: no display" in proc.stderr
