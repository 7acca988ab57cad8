"""The source grammar and the sources themselves, on real files and a real gst-launch."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from detector.errors import UserError
from detector.stream.sources import (CaptureSource, GstLaunchSource, ImageSource, SourceOptions,
                                     apply_flip, csi_tokens, opencv_gst_pipeline, open_source,
                                     parse_source)
from stream_helpers import frame_image, requires_gst, write_video


def read_all(src, limit=1000):
    out = []
    while len(out) < limit:
        cap = src.read()
        if cap is None:
            break
        out.append(cap)
    return out


def test_grammar_kinds(tmp_path):
    video = write_video(str(tmp_path / "v.mp4"), 3)
    img = str(tmp_path / "a.png")
    cv2.imwrite(img, frame_image(0))
    cases = {
        video: ("video", False),
        "file://" + video: ("video", False),
        img: ("image", False),
        str(tmp_path): ("images", False),
        str(tmp_path / "*.png"): ("images", False),
        "0": ("camera", True),
        "rtsp://127.0.0.1:8554/cam": ("stream", True),
        "http://127.0.0.1:8080/stream.mjpg": ("stream", True),
        "https://example.invalid/clip.mp4": ("stream", False),     # a file over HTTP
        "gst:videotestsrc is-live=true": ("gst", True),
        "gst:filesrc location=x.mp4 ! decodebin": ("gst", False),
        "csi://0": ("csi", True),
    }
    for text, (kind, live) in cases.items():
        src = parse_source(text)
        assert (src.kind, src.live) == (kind, live), text
    assert parse_source(video, SourceOptions(live=True)).live
    assert not parse_source("0", SourceOptions(live=False)).live


@pytest.mark.parametrize("text,fragment", [
    ("/nonexistent/clip.mp4", "no such file"),
    ("foo://bar", "unsupported source scheme"),
    ("csi://front", "csi://N"),
    ("/dev/video97", "no such camera"),
    ("gst:", "needs a pipeline"),
    ("gst:videotestsrc ! 'unclosed", "bad GStreamer pipeline"),
    ("", "SOURCE is empty"),
])
def test_grammar_errors(text, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_source(text)


def test_folder_and_glob_are_sorted_images_only(tmp_path):
    for name in ("b.jpg", "a.png", "c.JPG"):
        cv2.imwrite(str(tmp_path / name.lower()), frame_image(1))
    os.rename(tmp_path / "c.jpg", tmp_path / "c.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "d.png"), frame_image(2))
    src = parse_source(str(tmp_path))
    assert [os.path.basename(p) for p in src.paths] == ["a.png", "b.jpg", "c.JPG"]
    src = parse_source(str(tmp_path / "**" / "*.png"))
    assert [os.path.relpath(p, tmp_path) for p in src.paths] == \
        ["a.png", os.path.join("sub", "d.png")]
    with pytest.raises(UserError, match="none is an image"):
        parse_source(str(tmp_path / "*.txt"))
    with pytest.raises(UserError, match="no files match"):
        parse_source(str(tmp_path / "*.gif"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        parse_source(str(empty))


def test_corrupt_image_in_folder_is_skipped_and_counted(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), frame_image(1))
    (tmp_path / "2.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    cv2.imwrite(str(tmp_path / "3.png"), frame_image(3))
    warnings = []
    src = open_source(str(tmp_path), warn=warnings.append)
    got = read_all(src)
    assert [os.path.basename(c.origin) for c in got] == ["1.png", "3.png"]
    assert np.array_equal(got[1].image, cv2.imread(str(tmp_path / "3.png")))
    assert src.skipped == 1
    assert len(warnings) == 1 and str(tmp_path / "2.jpg") in warnings[0]


def test_single_unreadable_image_fails_at_open(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read the image"):
        open_source(str(bad))


def test_video_file_every_frame(tmp_path):
    path = write_video(str(tmp_path / "v.avi"), 9, 96, 64, fps=15)
    src = open_source(path)
    assert isinstance(src, CaptureSource)
    assert (src.size, src.fps, src.length, src.live) == ((96, 64), 15.0, 9, False)
    frames = read_all(src)
    src.close()
    assert len(frames) == 9
    assert all(f.image.shape == (64, 96, 3) and f.origin == path for f in frames)


def test_unreadable_video_fails_at_open(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    with pytest.raises(UserError, match="cannot open the video file|could not read a frame"):
        open_source(str(bad))


def test_camera_that_cannot_open():
    with pytest.raises(UserError, match="cannot open the camera"):
        open_source("63")


def test_flips_match_nvvidconv_semantics():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(apply_flip(img, "horizontal"), img[:, ::-1])
    assert np.array_equal(apply_flip(img, "vertical"), img[::-1])
    assert np.array_equal(apply_flip(img, "rotate-180"), img[::-1, ::-1])
    assert np.array_equal(apply_flip(img, "clockwise"), np.rot90(img, -1))
    assert np.array_equal(apply_flip(img, "counterclockwise"), np.rot90(img, 1))
    assert np.array_equal(apply_flip(img, "upper-left-diagonal"), img.transpose(1, 0, 2))
    assert np.array_equal(apply_flip(img, "upper-right-diagonal"),
                          img[::-1, ::-1].transpose(1, 0, 2))


def test_csi_pipeline():
    toks = csi_tokens(1, SourceOptions(width=1920, height=1080, rate=29.97, flip="rotate-180",
                                       sensor_mode=2))
    assert toks[:3] == ["nvarguscamerasrc", "sensor-id=1", "sensor-mode=2"]
    assert "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=2997/100,format=NV12" in toks
    assert "flip-method=2" in toks and toks[-1] == "video/x-raw,format=BGRx"
    assert "sensor-mode" not in " ".join(csi_tokens(0, SourceOptions()))
    assert "width=1280,height=720,framerate=30/1" in " ".join(csi_tokens(0, SourceOptions()))


def test_opencv_gstreamer_pipeline_strings():
    # Used where OpenCV is built with GStreamer (Jetson): a BGR appsink, one buffer when live.
    assert opencv_gst_pipeline([], True, 'videotestsrc ! video/x-raw,width=64 ! appsink drop=1') \
        == ("videotestsrc ! video/x-raw,width=64 ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1 sync=false")
    assert opencv_gst_pipeline([], False, ' filesrc location="a b.mp4" ! decodebin ') == \
        'filesrc location="a b.mp4" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! ' \
        'appsink sync=false'
    csi = opencv_gst_pipeline(csi_tokens(0, SourceOptions()), True)
    assert csi.startswith("nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,")
    assert "nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! videoconvert" in csi


@requires_gst
def test_gst_subprocess_frames_with_padded_rows():
    # 161 px BGR rows are padded to 484 bytes by GStreamer: frames must still be exact.
    src = open_source("gst:videotestsrc num-buffers=6 pattern=smpte ! "
                      "video/x-raw,width=161,height=50 ! appsink")
    assert isinstance(src, GstLaunchSource)
    assert src.size == (161, 50) and src.fps == 30 and src.live
    frames = read_all(src)
    src.close()
    assert len(frames) == 6
    img = frames[0].image
    assert img.shape == (50, 161, 3) and img.flags["C_CONTIGUOUS"] and img.flags["WRITEABLE"]
    # SMPTE bars: the first bar is white-ish grey, the second yellow (B low, G and R high).
    assert img[10, 5].min() > 150
    b, g, r = img[10, 161 // 7 + 8]
    assert b < 60 and g > 150 and r > 150


@requires_gst
def test_gst_errors_are_one_line():
    with pytest.raises(UserError, match='no element "nosuchelement"'):
        open_source("gst:nosuchelement ! videoconvert")
    with pytest.raises(UserError, match="nvarguscamerasrc"):
        open_source("csi://0")


@requires_gst
def test_gst_flip_option():
    text = "gst:videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=64,height=32"
    plain = read_all(open_source(text))[0].image
    flipped = read_all(open_source(text, SourceOptions(flip="horizontal")))[0].image
    assert np.array_equal(flipped, plain[:, ::-1])


def test_image_source_is_every_frame(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), frame_image(0))
    src = open_source(str(tmp_path / "x.png"))
    assert isinstance(src, ImageSource) and not src.live and src.length == 1
    assert len(read_all(src)) == 1
