"""Video sources: one grammar for every input of ``detector detect``.

    0, 1, ...            camera index (V4L2 on Linux)
    /dev/videoN          V4L2 device (also v4l2:///dev/videoN, v4l2://N)
    csi://N              Jetson CSI camera N: nvarguscamerasrc -> nvvidconv (GStreamer)
    rtsp://, rtsps://    network streams (OpenCV's FFmpeg)
    http://, https://    network streams; a URL ending in a video extension is a file
    gst:PIPELINE         any GStreamer pipeline producing video (we append the BGR conversion)
    file.mp4, ...        a video file (also file://PATH)
    img.jpg, ...         one image
    DIR, 'imgs/*.jpg'    a directory (sorted, images only) or a glob of images

``parse_source`` turns the text into a ``Source`` without touching the device or file beyond
checking that it exists; ``open()`` opens it and fails at once with a ``UserError`` when it
cannot deliver a frame. ``read()`` returns the next ``Captured`` frame, or None at the end of
the stream (or when a live stream drops: the pipeline then closes and reopens it).

GStreamer sources (csi://, gst:) go through OpenCV when its build has GStreamer (Jetson's
OpenCV does), otherwise through a ``gst-launch-1.0`` subprocess that writes raw BGR frames to a
pipe (PyPI's OpenCV has no GStreamer). The subprocess gets an argv list, never a shell string.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from fractions import Fraction
from typing import Callable, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from ..errors import ParamError, UserError
from .options import FLIPS, SourceOptions, check_capture

IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
              ".ppm", ".pgm", ".pbm", ".pnm", ".sr", ".ras", ".jp2")
VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv",
              ".wmv", ".3gp", ".ogv", ".h264", ".h265", ".mjpeg", ".mjpg")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")

GST_LAUNCH = "gst-launch-1.0"
GST_OPEN_TIMEOUT_S = 20.0
STREAM_OPEN_TIMEOUT_MS = 10000
STREAM_READ_TIMEOUT_MS = 5000
DEFAULT_CSI = (1280, 720, 30.0)

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Captured(NamedTuple):
    image: np.ndarray                    # BGR uint8 (H, W, 3), owned by the caller
    origin: str                          # the source text, or the image path for image sources


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own stderr logging (failures are reported as one line)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")      # AV_LOG_QUIET
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:                                        # very old OpenCV builds
        pass


def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def apply_flip(image: np.ndarray, flip: str) -> np.ndarray:
    """nvvidconv's flip-methods done with OpenCV (for sources other than csi://)."""
    if flip == "none":
        return image
    if flip == "counterclockwise":
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if flip == "clockwise":
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if flip == "rotate-180":
        return cv2.rotate(image, cv2.ROTATE_180)
    if flip == "horizontal":
        return cv2.flip(image, 1)
    if flip == "vertical":
        return cv2.flip(image, 0)
    if flip == "upper-right-diagonal":                   # transpose about the anti-diagonal
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if flip == "upper-left-diagonal":
        return cv2.transpose(image)
    raise ParamError("flip", f"expected one of {', '.join(FLIPS)}", value=flip)


class Source:
    """A stream of BGR frames. Subclasses set ``kind`` and ``live`` and implement the I/O."""

    kind = "source"
    live = False

    def __init__(self, text: str, options: SourceOptions, warn: Warn = warn_stderr):
        self.text = text
        self.options = options
        self.warn = warn
        self.fps: Optional[float] = None             # frames per second when known
        self.size: Optional[Tuple[int, int]] = None  # (width, height) when known
        self.length: Optional[int] = None            # number of frames when known
        self.skipped = 0                             # unreadable frames skipped (image folders)

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Optional[Captured]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device/file/process. The source can be opened again (reconnect)."""

    def interrupt(self) -> None:
        """Unblock a ``read()`` waiting in another thread where the source can (thread-safe)."""

    def describe(self) -> str:
        parts = [self.kind]
        if self.size:
            parts.append(f"{self.size[0]}x{self.size[1]}")
        if self.fps:
            parts.append(f"{self.fps:g} fps")
        if self.length:
            parts.append(f"{self.length} frame{'s' if self.length != 1 else ''}")
        parts.append("live: newest frame only" if self.live else "every frame")
        return ", ".join(parts)

    def _flip(self, image: np.ndarray) -> np.ndarray:
        return apply_flip(image, self.options.flip)


# ---- OpenCV VideoCapture ------------------------------------------------------------------

class CaptureSource(Source):
    """Cameras, network streams, video files and (with a GStreamer OpenCV) gst pipelines."""

    def __init__(self, text, options, warn, kind: str, target, api: int, live: bool,
                 params: Optional[List[int]] = None, flip_done: bool = False):
        super().__init__(text, options, warn)
        self.kind = kind
        self.target = target
        self.api = api
        self.live = live
        self.params = params or []
        self.flip_done = flip_done
        self._cap = None
        self._first: Optional[np.ndarray] = None

    def open(self) -> None:
        quiet_opencv()
        cap = cv2.VideoCapture(self.target, self.api, self.params) if self.params else \
            cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            raise UserError(f"{self.text}: cannot open {self._what()}{self._hint()}")
        if self.kind == "camera":
            o = self.options
            if o.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
            if o.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
            if o.rate:
                cap.set(cv2.CAP_PROP_FPS, o.rate)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)      # fewer stale frames queued in the driver
        ok, image = cap.read()
        if not ok or image is None or image.size == 0:
            cap.release()
            raise UserError(f"{self.text}: opened but could not read a frame from "
                            f"{self._what()} (unreadable or empty)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0.5 < fps < 1000 else None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "video" else 0
        self.length = n if n > 0 else None
        self._cap = cap
        self._first = self._fix(image)
        self.size = (self._first.shape[1], self._first.shape[0])

    def _fix(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image if self.flip_done else self._flip(image)

    def read(self) -> Optional[Captured]:
        if self._first is not None:
            image, self._first = self._first, None
            return Captured(image, self.text)
        if self._cap is None:
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        return Captured(self._fix(image), self.text)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._first = None

    def _what(self) -> str:
        return {"camera": "the camera", "stream": "the stream", "video": "the video file",
                "csi": "the CSI camera", "gst": "the GStreamer pipeline"}.get(self.kind, "it")

    def _hint(self) -> str:
        if self.kind == "camera":
            return " (no such device, or it is busy or not a video capture device)"
        if self.kind == "video":
            return " (not a video OpenCV/FFmpeg can read)"
        if self.kind == "stream":
            return " (unreachable, refused, or not a video stream)"
        if self.kind == "csi":
            return " (CSI cameras need a Jetson with nvarguscamerasrc; is nvargus-daemon running?)"
        return ""


# ---- gst-launch-1.0 subprocess ------------------------------------------------------------

_CAPS_RE = re.compile(r"width=\(int\)(\d+).*?height=\(int\)(\d+)")
_RATE_RE = re.compile(r"framerate=\(fraction\)(\d+)/(\d+)")
SINK_NAME = "detector_sink"


class GstLaunchSource(Source):
    """A GStreamer pipeline run by ``gst-launch-1.0``; raw BGR frames arrive on a pipe.

    We append ``videoconvert ! video/x-raw,format=BGR ! fdsink`` and run gst-launch with
    ``-v``: the negotiated caps of our fdsink (printed on stdout) give the frame size and rate.
    GStreamer pads the rows of packed BGR to 4 bytes, so a frame is ``stride * height`` bytes.
    """

    def __init__(self, text, options, warn, kind: str, tokens: List[str], live: bool):
        super().__init__(text, options, warn)
        self.kind = kind
        self.tokens = tokens
        self.live = live
        self._proc: Optional[subprocess.Popen] = None
        self._pipe = None
        self._lines: deque = deque(maxlen=40)
        self._caps = threading.Event()
        self._lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self._interrupted = False
        self._stride = 0

    def argv(self, fd: int) -> List[str]:
        return [GST_LAUNCH, "-v", *self.tokens, "!", "videoconvert", "!",
                "video/x-raw,format=BGR", "!", "fdsink", f"name={SINK_NAME}", f"fd={fd}",
                "sync=false"]

    def open(self) -> None:
        if shutil.which(GST_LAUNCH) is None:
            raise UserError(f"{self.text}: needs GStreamer, but this OpenCV is built without it "
                            f"and {GST_LAUNCH} is not on PATH (apt-get install gstreamer1.0-tools "
                            f"gstreamer1.0-plugins-base gstreamer1.0-plugins-good)")
        self._interrupted = False
        self._caps.clear()
        self._lines.clear()
        self.size = None
        r, w = os.pipe()
        try:
            proc = subprocess.Popen(self.argv(w), pass_fds=(w,), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)   # Ctrl-C is ours to handle
        except OSError as e:
            os.close(r)
            os.close(w)
            raise UserError(f"{self.text}: cannot run {GST_LAUNCH}: {e.strerror or e}") from None
        os.close(w)
        with self._lock:
            self._proc = proc
            self._pipe = os.fdopen(r, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read_log, args=(proc,), daemon=True,
                                        name="gst-log")
        self._reader.start()
        deadline = time.monotonic() + GST_OPEN_TIMEOUT_S
        while not self._caps.wait(0.05):
            if proc.poll() is not None or self._interrupted:
                self._reader.join(2.0)
                msg = self._error_line()
                self.close()
                raise UserError(f"{self.text}: cannot open {self._what()}: {msg}")
            if time.monotonic() > deadline:
                self.close()
                raise UserError(f"{self.text}: no video from {self._what()} within "
                                f"{GST_OPEN_TIMEOUT_S:g} s")

    def _what(self) -> str:
        return "the CSI camera" if self.kind == "csi" else "the GStreamer pipeline"

    def _read_log(self, proc: subprocess.Popen) -> None:
        tag = f"{SINK_NAME}.GstPad:sink: caps = "
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._lines.append(line)
            if tag in line and not self._caps.is_set():
                m = _CAPS_RE.search(line)
                if m:
                    w, h = int(m.group(1)), int(m.group(2))
                    self._stride = (w * 3 + 3) & ~3
                    rate = _RATE_RE.search(line)
                    if rate and int(rate.group(1)) > 0 and int(rate.group(2)) > 0:
                        self.fps = int(rate.group(1)) / int(rate.group(2))
                    self.size = (w, h)
                    self._caps.set()
        proc.stdout.close()

    def _error_line(self) -> str:
        lines = [ln for ln in self._lines if ln.strip()]
        for ln in reversed(lines):
            if ln.startswith(("ERROR", "WARNING: erroneous pipeline")):
                text = ln.split(":", 1)[1].strip() if ln.startswith("WARNING") else ln
                if self.kind == "csi" and "nvarguscamerasrc" in text:
                    text += " (CSI cameras need a Jetson with nvarguscamerasrc)"
                return text
        proc = self._proc
        if proc is not None and proc.returncode is not None:
            if proc.returncode < 0:
                return f"{GST_LAUNCH} was killed by signal {-proc.returncode}"
            return f"{GST_LAUNCH} exited with code {proc.returncode}" + \
                (f": {lines[-1]}" if lines else "")
        return "no video"

    def read(self) -> Optional[Captured]:
        pipe = self._pipe
        if pipe is None or self.size is None:
            return None
        w, h = self.size
        buf = bytearray(self._stride * h)
        view = memoryview(buf)
        got = 0
        try:
            while got < len(buf):
                n = pipe.readinto(view[got:])
                if not n:
                    break
                got += n
        except (OSError, ValueError):            # closed under us by close()
            got = -1
        if got != len(buf):
            self._report_end()
            return None
        image = np.frombuffer(buf, np.uint8).reshape(h, self._stride)
        if self._stride != w * 3:
            image = np.ascontiguousarray(image[:, :w * 3])
        image = image.reshape(h, w, 3)
        if self.kind != "csi":
            image = self._flip(image)
        return Captured(image, self.text)

    def _report_end(self) -> None:
        """Warn when gst-launch ended abnormally (not at EOS, not stopped by us)."""
        proc = self._proc
        if proc is None or self._interrupted:
            return
        try:
            code = proc.wait(2.0)
        except subprocess.TimeoutExpired:
            return
        if code != 0 and not self._interrupted:
            if self._reader is not None:
                self._reader.join(1.0)
            self.warn(f"{self.text}: {self._error_line()}")

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()

    def close(self) -> None:
        with self._lock:
            proc, pipe = self._proc, self._pipe
            self._proc = self._pipe = None
            self._interrupted = True
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(3.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if pipe is not None:
            pipe.close()
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None

    @property
    def pid(self) -> Optional[int]:
        """The running gst-launch process id (diagnostics, tests)."""
        proc = self._proc
        return proc.pid if proc is not None else None


# ---- image files --------------------------------------------------------------------------

class ImageSource(Source):
    """One image, a directory (sorted, images only) or a glob. Unreadable images in a folder
    or glob are skipped with a warning and counted in ``skipped``; a single one is an error."""

    live = False

    def __init__(self, text, options, warn, paths: List[str], single: bool):
        super().__init__(text, options, warn)
        self.paths = paths
        self.single = single
        self.kind = "image" if single else "images"
        self.length = len(paths)
        self._next = 0

    def open(self) -> None:
        self._next = 0
        if self.single:
            image = read_image(self.paths[0])
            if image is None:
                raise UserError(f"{self.text}: cannot read the image (corrupt or not an image)")
            self.size = (image.shape[1], image.shape[0])

    def read(self) -> Optional[Captured]:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            image = read_image(path)
            if image is None:
                self.skipped += 1
                self.warn(f"skipping unreadable image {path}")
                continue
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
            return Captured(self._flip(image), path)
        return None


def read_image(path: str) -> Optional[np.ndarray]:
    """BGR uint8 image, or None when the file cannot be read or decoded."""
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    if data.size == 0:
        return None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError):   # more pixels than memory allows (a PNG bomb)
        return None
    if image is None or image.size == 0:
        return None
    return image


def is_image_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTS


# ---- the grammar --------------------------------------------------------------------------

def uri_scheme(text: str) -> Optional[str]:
    """The lower-case scheme of ``scheme://...``, or None."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    return m.group(1).lower() if m else None


def _rate_caps(rate: float) -> str:
    f = Fraction(rate).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


def csi_tokens(sensor_id: int, options: SourceOptions) -> List[str]:
    """The nvarguscamerasrc -> nvvidconv pipeline of a Jetson CSI camera (BGRx out)."""
    w, h, r = DEFAULT_CSI
    w = options.width or w
    h = options.height or h
    r = options.rate or r
    src = ["nvarguscamerasrc", f"sensor-id={sensor_id}"]
    if options.sensor_mode is not None:
        src.append(f"sensor-mode={options.sensor_mode}")
    return src + ["!", f"video/x-raw(memory:NVMM),width={w},height={h},"
                       f"framerate={_rate_caps(r)},format=NV12",
                  "!", "nvvidconv", f"flip-method={FLIPS[options.flip]}",
                  "!", "video/x-raw,format=BGRx"]


def _strip_sink(tokens: List[str]) -> List[str]:
    """Drop a trailing ``! appsink ...`` (OpenCV-style pipelines): we add our own sink."""
    if "!" in tokens:
        i = len(tokens) - 1 - tokens[::-1].index("!")
        if tokens[i + 1:] and tokens[i + 1] in ("appsink", "fakesink", "fdsink", "autovideosink"):
            return tokens[:i]
    return tokens


_SINK_TAIL = re.compile(r"!\s*(appsink|fakesink|fdsink|autovideosink)(\s[^!]*)?$")


def opencv_gst_pipeline(tokens: List[str], live: bool, raw: Optional[str] = None) -> str:
    """The pipeline string for OpenCV's GStreamer backend, ending in a BGR appsink (live: one
    buffer, dropping older ones). ``raw``: the user's text (OpenCV parses it itself)."""
    tail = "appsink drop=true max-buffers=1 sync=false" if live else "appsink sync=false"
    head = _SINK_TAIL.sub("", raw.strip()).strip() if raw is not None else " ".join(tokens)
    return head + " ! videoconvert ! video/x-raw,format=BGR ! " + tail


def _gst_source(text, options, warn, kind: str, tokens: List[str], live: bool,
                raw: Optional[str] = None) -> Source:
    if opencv_has_gstreamer():
        pipeline = opencv_gst_pipeline(tokens, live, raw)
        return CaptureSource(text, options, warn, kind, pipeline, cv2.CAP_GSTREAMER, live,
                             flip_done=kind == "csi")
    return GstLaunchSource(text, options, warn, kind, tokens, live)


def _camera_api() -> int:
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def _live(options: SourceOptions, default: bool) -> bool:
    return default if options.live is None else options.live


def _gst_text(text: str, options: SourceOptions, warn: Warn) -> Source:
    """``gst:PIPELINE``: live unless it starts at a file."""
    try:
        tokens = _strip_sink(shlex.split(text[4:]))
    except ValueError as e:
        raise UserError(f"{text}: bad GStreamer pipeline: {e}") from None
    if not tokens:
        raise UserError("gst: needs a pipeline, e.g. gst:videotestsrc is-live=true")
    file_like = tokens[0] in ("filesrc", "multifilesrc")
    return _gst_source(text, options, warn, "gst", tokens, _live(options, not file_like),
                       text[4:])


def _csi_uri(text: str, rest: str, options: SourceOptions, warn: Warn) -> Source:
    if not rest.isdigit():
        raise UserError(f"{text}: expected csi://N with a sensor number, e.g. csi://0")
    return _gst_source(text, options, warn, "csi", csi_tokens(int(rest), options),
                       _live(options, True))


def _v4l2_uri(text: str, rest: str, options: SourceOptions, warn: Warn) -> Source:
    return _camera(text, int(rest) if rest.isdigit() else rest, options, warn,
                   _live(options, True))


def _stream_uri(text: str, rest: str, options: SourceOptions, warn: Warn) -> Source:
    """rtsp://, http(s)://, ...: live, except an http(s) URL of a video file."""
    if not rest:
        raise UserError(f"{text}: missing host in the stream URL")
    path = text.split("?", 1)[0].lower()
    file_like = text.lower().startswith(("http:", "https:")) and path.endswith(
        tuple(e for e in VIDEO_EXTS if e not in (".mjpg", ".mjpeg")))   # .mjpg: a stream
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS]
    return CaptureSource(text, options, warn, "stream", text, cv2.CAP_FFMPEG,
                         _live(options, not file_like), params)


def _file_uri(text: str, rest: str, options: SourceOptions, warn: Warn) -> Source:
    return _path_source(text, rest, options, warn)


# scheme -> parser(text, the text after "scheme://", options, warn)
SCHEMES = {"csi": _csi_uri, "v4l2": _v4l2_uri, "file": _file_uri,
           **{s: _stream_uri for s in STREAM_SCHEMES}}


def parse_source(text: str, options: Optional[SourceOptions] = None,
                 warn: Warn = warn_stderr) -> Source:
    """SOURCE text -> an unopened Source. Raises UserError for a bad URI or a missing path
    (ParamError for a bad capture option)."""
    options = options or SourceOptions()
    check_capture(options)
    if not isinstance(text, str) or not text.strip():
        raise UserError("SOURCE is empty: give an image, directory, glob, video file, camera "
                        "index, /dev/videoN, csi://N, rtsp://, http(s):// or gst:PIPELINE")
    if text.startswith("gst:") and not text.startswith("gst://"):
        return _gst_text(text, options, warn)
    scheme = uri_scheme(text)
    if scheme is None:
        if text.isdigit() or text.startswith("/dev/video"):
            return _camera(text, int(text) if text.isdigit() else text, options, warn,
                           _live(options, True))
        return _path_source(text, text, options, warn)
    parse = SCHEMES.get(scheme)
    if parse is None:
        raise UserError(f"{text}: unsupported source scheme {scheme}:// (expected csi://, "
                        f"v4l2://, rtsp://, http(s)://, file:// or gst:PIPELINE)")
    return parse(text, text[len(scheme) + 3:], options, warn)


def _camera(text, target, options, warn, live: bool) -> Source:
    if isinstance(target, str) and not os.path.exists(target):
        raise UserError(f"{text}: no such camera device")
    return CaptureSource(text, options, warn, "camera", target, _camera_api(), live)


def _path_source(text: str, path: str, options: SourceOptions, warn: Warn) -> Source:
    """A directory, an existing file (image or video) or a glob of images."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if is_image_path(n))
        paths = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
        if not paths:
            raise UserError(f"{text}: no images in the directory (.jpg, .png, .bmp, ...)")
        return ImageSource(text, options, warn, paths, single=False)
    if os.path.isfile(path):
        if is_image_path(path):
            return ImageSource(text, options, warn, [path], single=True)
        return CaptureSource(text, options, warn, "video", path, cv2.CAP_ANY,
                             _live(options, False))
    if any(c in path for c in "*?["):
        matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise UserError(f"{text}: no files match the pattern")
        images = [p for p in matches if is_image_path(p)]
        if not images:
            raise UserError(f"{text}: {len(matches)} files match but none is an image")
        return ImageSource(text, options, warn, images, single=False)
    if os.path.exists(path):
        raise UserError(f"{text}: not a file or directory")
    raise UserError(f"{text}: no such file or directory")


def open_source(text: str, options: Optional[SourceOptions] = None,
                warn: Warn = warn_stderr) -> Source:
    """Parse and open; raises UserError at once when the source cannot deliver a frame."""
    src = parse_source(text, options, warn)
    src.open()
    return src
