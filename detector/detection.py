"""The result type of a detector: one object in one frame."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple


class Detection(NamedTuple):
    """A detected object; ``box`` is (x1, y1, x2, y2) in pixels of the original frame.
    ``track_id``: the identity a tracker gave it (stable across frames), None untracked."""
    box: Tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str
    track_id: Optional[int] = None

    def to_json(self) -> dict:
        out = {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 5),
               "class_id": int(self.class_id), "class_name": self.class_name}
        if self.track_id is not None:
            out["track_id"] = int(self.track_id)
        return out
