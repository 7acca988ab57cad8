"""The MOT Challenge text format: tracks as ``frame, id, x, y, w, h, conf, class, visibility``.

One line per object per frame, comma separated::

    1,3,10.5,20,30.25,40,0.91234,2,-1

- ``frame`` is 1-based (the first frame of a video is 1; detect's 0-based frame index + 1);
- ``id`` is the track identity, a positive integer (our tracker's ``track_id``);
- ``x, y, w, h`` are the top-left corner and size in pixels of the frame (0-based continuous
  coordinates, as ``Detection.box``): ``x = x1, y = y1, w = x2 - x1, h = y2 - y1``;
- ``conf``: in results files the detection score; in ground truth 1 for an object that counts
  and 0 for one that is ignored (too little of it visible), as in the MOT Challenge;
- ``class`` is 1-based like the MOT Challenge's (``class_id + 1``; the class names in their
  usual order), -1 where unknown;
- ``visibility``: in ground truth the visible fraction of the object in [0, 1]; -1 elsewhere.

:func:`read_mot` also reads files with only the first six columns (the rest default to
``conf`` 1 and -1) and the ten-column MOT15 layout (its world coordinates are ignored), with
commas or whitespace between the values.
"""
from __future__ import annotations

import io
import math
from typing import Iterable, List, NamedTuple, Optional, Sequence, TextIO

from ..detection import Detection
from ..errors import UserError
from .atomic import atomic_path


class MotRow(NamedTuple):
    """One line of a MOT file. ``frame`` is 1-based; ``class_id`` is 0-based (the file holds
    ``class_id + 1``), -1 where unknown."""
    frame: int
    track_id: int
    x: float
    y: float
    w: float
    h: float
    conf: float = 1.0
    class_id: int = -1
    visibility: float = -1.0

    @property
    def box(self):
        """(x1, y1, x2, y2) in pixels."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)


def _num(v: float, digits: int) -> str:
    text = f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_row(row: MotRow) -> str:
    """The text line of ``row`` (no newline)."""
    cls = row.class_id + 1 if row.class_id >= 0 else -1
    vis = _num(row.visibility, 3) if row.visibility >= 0 else "-1"
    return (f"{int(row.frame)},{int(row.track_id)},{_num(row.x, 2)},{_num(row.y, 2)},"
            f"{_num(row.w, 2)},{_num(row.h, 2)},{_num(row.conf, 5)},{cls},{vis}")


def rows_for_frame(frame_index: int, detections: Iterable[Detection]) -> List[MotRow]:
    """The rows of the tracked ``detections`` of one frame; ``frame_index`` is 0-based (as in
    detect's JSON Lines). Detections without a ``track_id`` have no row."""
    out = []
    for d in detections:
        if d.track_id is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in d.box)
        out.append(MotRow(int(frame_index) + 1, int(d.track_id), x1, y1, x2 - x1, y2 - y1,
                          float(d.score), int(d.class_id), -1.0))
    return out


def write_mot(path: str, rows: Iterable[MotRow]) -> None:
    """Write ``rows`` to ``path`` at once (atomically), sorted by frame then id."""
    text = "".join(format_row(r) + "\n" for r in sorted(rows, key=lambda r: (r.frame, r.track_id)))
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)


class MotWriter:
    """Writes a MOT results file frame by frame, as a run produces them (each frame's lines
    flushed). ``write(frame_index, detections)`` takes detect's 0-based frame index."""

    def __init__(self, path: str):
        self.path = path
        self.rows = 0
        try:
            self._f: Optional[TextIO] = open(path, "w", encoding="utf-8", newline="\n")
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None

    def write(self, frame_index: int, detections: Sequence[Detection]) -> None:
        rows = rows_for_frame(frame_index, detections)
        if not rows or self._f is None:
            return
        try:
            self._f.write("".join(format_row(r) + "\n" for r in rows))
            self._f.flush()
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.rows += len(rows)

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            f.close()

    def __enter__(self) -> "MotWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse_line(text: str, where: str) -> MotRow:
    parts = [p.strip() for p in text.split(",")] if "," in text else text.split()
    if len(parts) < 6 or len(parts) > 10:
        raise UserError(f"{where}: expected 6 to 10 values (frame, id, x, y, w, h, conf, "
                        f"class, visibility), got {len(parts)}")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"{where}: expected numbers, got {text.strip()!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise UserError(f"{where}: values must be finite, got {text.strip()!r}")
    frame, tid = vals[0], vals[1]
    if frame != int(frame) or frame < 1:
        raise UserError(f"{where}: frame must be an integer >= 1 (frames are 1-based), "
                        f"got {parts[0]}")
    if tid != int(tid):
        raise UserError(f"{where}: id must be an integer, got {parts[1]}")
    if vals[4] < 0 or vals[5] < 0:
        raise UserError(f"{where}: width and height must be >= 0, got {parts[4]}, {parts[5]}")
    conf = vals[6] if len(vals) > 6 else 1.0
    cls, vis = -1, -1.0
    if len(vals) in (8, 9):       # MOT16+: conf, class, visibility (ten values: MOT15's x, y, z)
        cls = int(vals[7]) - 1 if vals[7] >= 1 else -1
        vis = vals[8] if len(vals) == 9 else -1.0
    return MotRow(int(frame), int(tid), vals[2], vals[3], vals[4], vals[5], conf, cls, vis)


def parse_mot(text: str, name: str = "<mot>") -> List[MotRow]:
    """The rows of MOT text; a bad line raises a UserError naming ``name`` and its line."""
    rows = []
    for n, line in enumerate(io.StringIO(text), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(_parse_line(line, f"{name}:{n}"))
    return rows


def read_mot(path: str) -> List[MotRow]:
    """The rows of a MOT file, in file order."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    return parse_mot(text, path)
