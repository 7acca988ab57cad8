"""What a detection run is asked to do: :class:`DetectOptions` and its parts.

    SourceOptions   how to capture: size, rate, flip and sensor mode of cameras, live or not
    OutputOptions   where the results go: sink URIs (outputs.py), the shorthands for them, the
                    per-frame lines and the statistics file
    DetectOptions   the SOURCE text (or several), both of the above, when to stop, tracking

The command line builds them (``detector detect``); the library checks them and names the
field in its errors (:class:`detector.errors.ParamError`, e.g. ``max_clients=0: must be at
least 1``). Nothing here opens a file or imports OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from ..errors import ParamError
from ..track.options import TrackerOptions

# nvvidconv flip-method values by name (done with OpenCV for sources other than csi://).
FLIPS = {"none": 0, "counterclockwise": 1, "rotate-180": 2, "clockwise": 3,
         "horizontal": 4, "upper-right-diagonal": 5, "vertical": 6, "upper-left-diagonal": 7}


@dataclass(frozen=True)
class SourceOptions:
    """Capture options of cameras and csi:// (size, rate, sensor mode), a flip for every
    source, and whether to keep only the newest frame (``live``; None: by source type)."""
    width: Optional[int] = None
    height: Optional[int] = None
    rate: Optional[float] = None
    flip: str = "none"
    sensor_mode: Optional[int] = None
    live: Optional[bool] = None


@dataclass(frozen=True)
class OutputOptions:
    """Where a run's results go. ``outputs`` are sink URIs (see outputs.py); ``save``,
    ``json``, ``show`` and ``serve`` are shorthands for the common ones:

        save=PATH        annotated frames: a video file, an image folder, or an image file
        json=PATH        JSON Lines at PATH whatever its extension (``-``: stdout)
        show=True        display://0, skipped with a note where no window can open
        serve=HOST:PORT  http://HOST:PORT (also ``:PORT`` or ``PORT``: host 127.0.0.1)
        mot=PATH         mot:PATH, the tracks in the MOT Challenge text format

    With several sources, ``{name}`` in a path becomes each source's name (outputs.py).
    """
    outputs: Tuple[str, ...] = ()
    save: Optional[str] = None
    json: Optional[str] = None
    show: bool = False
    serve: Optional[str] = None
    mot: Optional[str] = None
    max_clients: int = 4                  # MJPEG clients served at once (more get 503)
    quiet: bool = False                   # no per-frame lines on stdout
    stats_json: Optional[str] = None      # pipeline statistics as JSON, written at the end


@dataclass(frozen=True)
class DetectOptions:
    """One run: SOURCE (sources.py's grammar), or a sequence of them (one network for all,
    a batch of their frames per call) -> the detector -> every output. ``track``: one tracker
    per source gives the detections track ids (settings: ``tracker``); a MOT output turns it
    on too."""
    source: Union[str, Tuple[str, ...]]
    capture: SourceOptions = field(default_factory=SourceOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    max_frames: Optional[int] = None      # stop after this many frames (of each source)
    reconnect: bool = True                # reopen a live source that drops
    track: bool = False
    tracker: Optional[TrackerOptions] = None

    @property
    def sources(self) -> Tuple[str, ...]:
        """The SOURCE texts, in order."""
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)


def check_capture(options: SourceOptions) -> None:
    if options.flip not in FLIPS:
        raise ParamError("flip", f"expected one of {', '.join(FLIPS)}", value=options.flip)
    for name in ("width", "height", "rate"):
        value = getattr(options, name)
        if value is not None and not value > 0:
            raise ParamError(name, "must be positive", value=value)
    if options.sensor_mode is not None and options.sensor_mode < 0:
        raise ParamError("sensor_mode", "must be >= 0", value=options.sensor_mode)


def check_detect(options: DetectOptions) -> None:
    """ParamError for a value no run can use (the URIs are checked by their parsers)."""
    check_capture(options.capture)
    if not isinstance(options.source, str) and (
            not options.sources or not all(isinstance(s, str) for s in options.sources)):
        raise ParamError("source", "expected a SOURCE text or a non-empty sequence of them",
                         value=options.source)
    if options.tracker is not None and not isinstance(options.tracker, TrackerOptions):
        raise ParamError("tracker", "expected TrackerOptions", value=options.tracker)
    if options.max_frames is not None and options.max_frames < 1:
        raise ParamError("max_frames", "must be at least 1", value=options.max_frames)
    if options.output.max_clients < 1:
        raise ParamError("max_clients", "must be at least 1", value=options.output.max_clients)
    if isinstance(options.output.outputs, str):
        raise ParamError("outputs", "expected a sequence of URIs, not one string",
                         value=options.output.outputs)
