"""``detector detect`` as users run it: real subprocesses, real files, real signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import cv2
import pytest

from conftest import REPO, assert_user_error, cli_env, run_cli
from stream_helpers import (MODEL, SIZE, count_video_frames, frame_image, gst_live, requires_gst,
                            write_video)

MODEL_ARGS = ("--weights", MODEL, "--img-size", str(SIZE))
RECORD_KEYS = ["frame", "source", "width", "height", "detections"]
DET_KEYS = ["box", "score", "class_id", "class_name"]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_records(records, width, height):
    for r in records:
        assert list(r) == RECORD_KEYS
        assert (r["width"], r["height"]) == (width, height)
        for d in r["detections"]:
            assert list(d) == DET_KEYS
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
            assert 0 < d["score"] <= 1 and isinstance(d["class_id"], int)
            assert isinstance(d["class_name"], str)


def test_video_file_frame_by_frame(tmp_path):
    src = write_video(str(tmp_path / "in.mp4"), 30, 160, 120, fps=12)
    out, jl, st = (str(tmp_path / n) for n in ("out.mp4", "d.jsonl", "stats.json"))
    proc = run_cli("detect", src, *MODEL_ARGS, "--conf", "0.02", "--save", out, "--json", jl,
                   "--stats-json", st)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(jl)
    assert [r["frame"] for r in records] == list(range(30))
    assert all(r["source"] == src for r in records)
    check_records(records, 160, 120)
    assert sum(len(r["detections"]) for r in records) > 0
    assert count_video_frames(out) == (30, 12.0, (160, 120))
    stats = json.load(open(st))
    assert stats["frames"] == {"read": 30, "processed": 30, "dropped": 0, "skipped": 0}
    assert stats["stop_reason"] == "end of stream" and stats["live"] is False
    for stage in ("capture", "preprocess", "network", "decode_nms", "output", "end_to_end"):
        lat = stats["latency_ms"][stage]
        assert 0 <= lat["p50"] <= lat["p95"], stage
    assert stats["throughput_fps"] > 0
    lines = proc.stdout.splitlines()                 # one line per frame, not a TTY: no bar
    assert len(lines) == 30 and lines[0].startswith("frame 0:")
    assert "frames: 30 read, 30 processed, 0 dropped" in proc.stderr


def test_video_to_image_folder_and_max_frames(tmp_path):
    src = write_video(str(tmp_path / "in.avi"), 12)
    out = tmp_path / "frames"
    proc = run_cli("detect", src, *MODEL_ARGS, "--save", str(out) + "/", "--max-frames", "5",
                   "--quiet", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == [f"frame_{i:06d}.jpg" for i in range(5)]
    assert [json.loads(line)["frame"] for line in proc.stdout.splitlines()] == list(range(5))


def test_folder_with_a_corrupt_image(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i, name in enumerate(("a.jpg", "b.png", "d.png")):
        cv2.imwrite(str(d / name), frame_image(i, 200, 100))
    (d / "c.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (d / "readme.txt").write_text("ignored")
    out, jl, st = tmp_path / "out", str(tmp_path / "d.jsonl"), str(tmp_path / "s.json")
    proc = run_cli("detect", str(d), *MODEL_ARGS, "--save", str(out), "--json", jl,
                   "--stats-json", st)
    assert proc.returncode == 0, proc.stderr
    assert f"skipping unreadable image {d / 'c.jpg'}" in proc.stderr
    records = read_jsonl(jl)
    assert [os.path.basename(r["source"]) for r in records] == ["a.jpg", "b.png", "d.png"]
    assert [r["frame"] for r in records] == [0, 1, 2]
    check_records(records, 200, 100)
    assert sorted(os.listdir(out)) == ["a.jpg", "b.png", "d.png"]
    assert cv2.imread(str(out / "b.png")).shape == (100, 200, 3)
    assert json.load(open(st))["frames"]["skipped"] == 1
    assert "1 skipped" in proc.stderr


def test_glob_and_single_image(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), frame_image(i))
    cv2.imwrite(str(tmp_path / "x.jpg"), frame_image(9))
    jl = str(tmp_path / "g.jsonl")
    proc = run_cli("detect", str(tmp_path / "*.png"), *MODEL_ARGS, "--json", jl, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert [os.path.basename(r["source"]) for r in read_jsonl(jl)] == ["0.png", "1.png", "2.png"]
    out = str(tmp_path / "annotated.jpg")
    proc = run_cli("detect", str(tmp_path / "x.jpg"), *MODEL_ARGS, "--save", out)
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(out).shape == (120, 160, 3)
    assert proc.stdout.startswith(str(tmp_path / "x.jpg") + ": ")


def _spawn(*args):
    return subprocess.Popen([sys.executable, "-m", "detector", "detect", *map(str, args)],
                            cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _drain(stream, into):
    t = threading.Thread(target=lambda: into.extend(stream), daemon=True)
    t.start()
    return t


@requires_gst
@pytest.mark.parametrize("live", ["yes", "no"])
def test_sigint_leaves_a_playable_video(tmp_path, live):
    out, jl, st = str(tmp_path / "out.mp4"), str(tmp_path / "d.jsonl"), str(tmp_path / "s.json")
    proc = _spawn(gst_live(), *MODEL_ARGS, "--live", live, "--save", out, "--json", jl,
                  "--stats-json", st)
    err = []
    _drain(proc.stderr, err)
    try:
        for _ in range(10):                          # wait for 10 processed frames
            assert proc.stdout.readline().startswith("frame "), "".join(err)
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(60) == 130, "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in "".join(err)
    stats = json.load(open(st))
    n = stats["frames"]["processed"]
    assert stats["stop_reason"] == "SIGINT" and n >= 10
    assert len(rest.splitlines()) == n - 10
    assert len(read_jsonl(jl)) == n
    frames, fps, size = count_video_frames(out)      # moov atom written: a playable mp4
    assert (frames, fps, size) == (n, 30.0, (160, 120))


@requires_gst
def test_serve_mjpeg_from_the_cli_then_sigterm(tmp_path):
    import http.client
    proc = _spawn(gst_live(), *MODEL_ARGS, "--serve", "127.0.0.1:0", "--quiet")
    try:
        url = None
        while url is None:
            line = proc.stderr.readline()
            assert line, "the server never started"
            if "serving MJPEG at " in line:
                url = line.split("serving MJPEG at ", 1)[1].split()[0]
        err = []
        _drain(proc.stderr, err)
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/stream.mjpg")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("multipart/x-mixed-replace; boundary=")
        data = b""
        while data.count(b"\xff\xd9") < 3:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(4096)
            assert chunk
            data += chunk
        assert data.startswith(b"--") and b"\xff\xd8" in data
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143, "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- errors: one line, exit code 2 ---------------------------------------------------------

def test_missing_file():
    assert_user_error(run_cli("detect", "/no/such/clip.mp4", *MODEL_ARGS), "/no/such/clip.mp4",
                      "no such file")


def test_unreadable_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    assert_user_error(run_cli("detect", str(bad), *MODEL_ARGS), "broken.mp4", "cannot open")


def test_unreadable_single_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    assert_user_error(run_cli("detect", str(bad), *MODEL_ARGS), "broken.jpg", "cannot read")


@pytest.mark.parametrize("source,fragment", [
    ("ftp://host/x.mp4", "unsupported source scheme"),
    ("csi://left", "csi://N"),
    ("/dev/video99", "no such camera"),
])
def test_bad_uri(source, fragment):
    assert_user_error(run_cli("detect", source, *MODEL_ARGS), fragment)


def test_camera_that_cannot_open():
    assert_user_error(run_cli("detect", "59", *MODEL_ARGS), "59", "cannot open the camera")


@requires_gst
def test_bad_gst_pipeline():
    assert_user_error(run_cli("detect", "gst:nosuchelement", *MODEL_ARGS), "nosuchelement")
    assert_user_error(run_cli("detect", "csi://0", *MODEL_ARGS), "csi://0", "nvarguscamerasrc")


def test_bad_outputs(tmp_path):
    src = write_video(str(tmp_path / "in.mp4"), 3)
    assert_user_error(run_cli("detect", src, *MODEL_ARGS, "--save", src), "input video")
    assert_user_error(run_cli("detect", src, *MODEL_ARGS, "--save", str(tmp_path / "o.jpg")),
                      "single-image source")
    assert_user_error(run_cli("detect", src, *MODEL_ARGS, "--serve", "localhost:http"),
                      "--serve", "HOST:PORT")
    assert_user_error(run_cli("detect", src, *MODEL_ARGS, "--save", "/proc/nope/out.mp4"),
                      "--save")


def test_show_without_display_is_a_note(tmp_path):
    src = write_video(str(tmp_path / "in.avi"), 2)
    env = cli_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = run_cli("detect", src, *MODEL_ARGS, "--show", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "note: --show is off" in proc.stderr
