"""Sinks: where annotated frames and detections go. Several can be used at once.

- ``JsonLinesSink``  one JSON object per frame (path ``-``: stdout).
- ``MotSink``        tracked detections in the MOT Challenge text format (``io.mot``).
- ``VideoFileSink``  a video at the source's fps and size (mp4v, then avc1; .avi: MJPG).
- ``ImageDirSink``   one image per frame in a folder (image sources keep their names).
- ``ImageFileSink``  the annotated image of a single-image source.
- ``WindowSink``     an OpenCV window; q or ESC (or closing it) stops the run.
- ``mjpeg.MjpegServer``  MJPEG over HTTP.

``outputs.py`` turns output URIs into these (``open_sink``). A sink has ``write(frame)`` (a
``pipeline.Frame``: ``index``, ``image`` (BGR, annotated when ``needs_overlay``), ``origin``,
``detections``, ``times``) and ``close()``; errors users can cause raise ``UserError``, named
by the sink's ``Label``. Constructors open files and sockets, so bad paths fail at once.
"""
from __future__ import annotations

import json
import os
import sys
from typing import NamedTuple, Optional, Tuple

import cv2

from ..errors import ParamError, UserError
from ..io.mot import MotWriter

VIDEO_FOURCCS = {".mp4": ("mp4v", "avc1"), ".m4v": ("mp4v", "avc1"), ".mov": ("mp4v", "avc1"),
                 ".avi": ("MJPG", "XVID", "mp4v"), ".mkv": ("mp4v", "MJPG", "XVID")}
DEFAULT_FPS = 30.0
SAVED_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Label(NamedTuple):
    """How messages name an output: its value (a path, a URI) and, when a parameter of the
    run asked for it, that parameter (the command line shows it as its flag).

    Errors are ``ParamError(param, message, value)`` then, else ``"VALUE: message"``."""
    value: str
    param: Optional[str] = None

    def error(self, message: str) -> UserError:
        if self.param is None:
            return UserError(f"{self.value}: {message}" if self.value else message)
        if self.value:
            return ParamError(self.param, message, value=self.value)
        return ParamError(self.param, message)

    def text(self, name=None) -> str:
        """``out.mp4``, ``save=out.mp4``, or with ``name`` (param -> how the caller names
        it, e.g. the command line's flag) ``name("save") + " out.mp4"``."""
        if self.param is None:
            return self.value
        if name is None:
            return f"{self.param}={self.value}" if self.value else self.param
        return f"{name(self.param)} {self.value}" if self.value else name(self.param)


class Sink:
    needs_overlay = False
    stop_requested = False

    def write(self, frame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def ensure_parent_dir(path: str, label: Optional[Label] = None) -> None:
    """Create the folder ``path`` goes into; a UserError naming ``label`` when it cannot."""
    label = label or Label(path)
    d = os.path.dirname(os.path.abspath(path))
    if os.path.exists(d) and not os.path.isdir(d):
        raise label.error(f"{d} is a file, not a directory")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise label.error(f"cannot create the directory {d}: {e.strerror or e}") from None


def _cannot_write(label: Label, e: OSError, after: str = "") -> UserError:
    return label.error(f"cannot write: {e.strerror or e}{after}")


# ---- MOT results ----------------------------------------------------------------------------

class MotSink(Sink):
    """The tracked detections of each frame as MOT Challenge lines (frame = ``index`` + 1,
    the track id, the box as x, y, w, h, the score, class + 1, -1), flushed per frame.
    Detections without a track id have no line."""

    def __init__(self, path: str, label: Optional[Label] = None):
        self.path = path
        self.label = label or Label(path)
        ensure_parent_dir(path, self.label)
        try:
            self._writer = MotWriter(path)
        except UserError as e:
            raise self.label.error(str(e)) from None

    @property
    def rows(self) -> int:
        return self._writer.rows

    def write(self, frame) -> None:
        try:
            self._writer.write(frame.index, frame.detections)
        except UserError as e:
            raise self.label.error(str(e)) from None

    def close(self) -> None:
        self._writer.close()


# ---- JSON Lines ---------------------------------------------------------------------------

class JsonLinesSink(Sink):
    """``{"frame", "source", "width", "height", "detections": [...]}`` per line, flushed."""

    def __init__(self, path: str, label: Optional[Label] = None):
        self.path = path
        self.label = label or Label(path)
        if path == "-":
            self._f, self._own = sys.stdout, False
            return
        ensure_parent_dir(path, self.label)
        try:
            self._f = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise _cannot_write(self.label, e) from None
        self._own = True

    @staticmethod
    def record(frame) -> dict:
        return {"frame": frame.index, "source": frame.origin, "width": frame.width,
                "height": frame.height, "detections": [d.to_json() for d in frame.detections]}

    def write(self, frame) -> None:
        try:
            self._f.write(json.dumps(self.record(frame)) + "\n")
            self._f.flush()
        except OSError as e:                    # disk full: stop with one line, not a trace
            raise _cannot_write(self.label, e, f" (the lines before frame {frame.index} are "
                                               f"complete)") from None

    def close(self) -> None:
        if self._own and not self._f.closed:
            try:
                self._f.close()
            except OSError as e:
                raise _cannot_write(self.label, e) from None


# ---- files ----------------------------------------------------------------------------------

def _imwrite(path: str, image, label: Label) -> None:
    ext = os.path.splitext(path)[1] or ".jpg"
    ok, data = cv2.imencode(ext, image)
    if not ok:
        raise label.error(f"OpenCV cannot encode {ext} images")
    try:
        with open(path, "wb") as f:
            f.write(data.tobytes())
    except OSError as e:
        raise _cannot_write(label, e) from None


class VideoFileSink(Sink):
    """A video at the source's frame rate and size (frames of another size are resized)."""

    needs_overlay = True

    def __init__(self, path: str, fps: Optional[float] = None, label: Optional[Label] = None):
        self.label = label or Label(path)
        ext = os.path.splitext(path)[1].lower()
        if ext not in VIDEO_FOURCCS:
            raise self.label.error(f"unknown video type {ext or '(none)'} (use "
                                   f"{', '.join(VIDEO_FOURCCS)}, or a directory for images)")
        self.path = path
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.fourccs = VIDEO_FOURCCS[ext]
        self.fourcc: Optional[str] = None
        self.frames = 0
        self._writer = None
        self._size: Optional[Tuple[int, int]] = None
        ensure_parent_dir(path, self.label)
        try:                                    # fail now, not at the first frame
            with open(path, "wb"):
                pass
        except OSError as e:
            raise _cannot_write(self.label, e) from None

    def _open(self, w: int, h: int) -> None:
        for fourcc in self.fourccs:
            writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
            if writer.isOpened():
                self._writer, self._size, self.fourcc = writer, (w, h), fourcc
                return
            writer.release()
        raise self.label.error(f"OpenCV cannot write this video type here "
                               f"(tried {', '.join(self.fourccs)})")

    def write(self, frame) -> None:
        image = frame.image
        if self._writer is None:
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()           # writes the container index: a playable file
            self._writer = None
            self._check_written()
        elif self.frames == 0 and os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            os.unlink(self.path)             # nothing was written: no empty placeholder

    def _check_written(self) -> None:
        """OpenCV's writer reports no write errors: read the container back (its header and
        index only), so a full disk is an error rather than a silently cut video."""
        cap = cv2.VideoCapture(self.path)
        try:
            readable = cap.isOpened()
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if readable else 0
        finally:
            cap.release()
        if not readable or count < self.frames - max(2, self.frames // 100):
            got = f"{count} of {self.frames} frames readable" if readable else "not readable"
            raise self.label.error(f"the video is incomplete ({got}): the disk is full or "
                                   "the file could not be written")


class ImageDirSink(Sink):
    """One annotated image per frame: the source image's name, or ``frame_000123.jpg``."""

    needs_overlay = True

    def __init__(self, path: str, keep_names: bool, label: Optional[Label] = None):
        self.path = path
        self.label = label or Label(path)
        self.keep_names = keep_names
        self._used = set()
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise self.label.error(f"cannot create the directory: {e.strerror or e}") from None
        if not os.access(path, os.W_OK):
            raise self.label.error("the directory is not writable")

    def write(self, frame) -> None:
        if self.keep_names:
            name = os.path.basename(frame.origin)
            if os.path.splitext(name)[1].lower() not in SAVED_IMAGE_EXTS:
                name = os.path.splitext(name)[0] + ".jpg"
            if name in self._used:          # same name from two folders of a glob
                name = f"{frame.index:06d}_{name}"
        else:
            name = f"frame_{frame.index:06d}.jpg"
        self._used.add(name)
        path = os.path.join(self.path, name)
        _imwrite(path, frame.image, self.label._replace(value=path))


class ImageFileSink(Sink):
    """The annotated image of a single-image source."""

    needs_overlay = True

    def __init__(self, path: str, label: Optional[Label] = None):
        self.path = path
        self.label = label or Label(path)
        ensure_parent_dir(path, self.label)

    def write(self, frame) -> None:
        _imwrite(self.path, frame.image, self.label)


# ---- window -------------------------------------------------------------------------------

class WindowSink(Sink):
    """An OpenCV window; q or ESC, or closing the window, asks the pipeline to stop."""

    needs_overlay = True

    def __init__(self, title: str = "detector"):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        self._shown = False

    @staticmethod
    def unavailable() -> Optional[str]:
        """Why no window can be shown here, or None when one can."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or
                                                     os.environ.get("WAYLAND_DISPLAY")):
            return "no display (DISPLAY is not set)"
        try:
            cv2.namedWindow("detector-probe", cv2.WINDOW_NORMAL)
            cv2.destroyWindow("detector-probe")
        except cv2.error:
            return "this OpenCV has no GUI support (e.g. opencv-python-headless)"
        return None

    def write(self, frame) -> None:
        cv2.imshow(self.title, frame.image)
        self._shown = True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            self.stop_requested = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_requested = True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass
