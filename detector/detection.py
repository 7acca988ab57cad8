"""The result type of a detector: one object in one frame."""
from __future__ import annotations

from typing import NamedTuple, Tuple


class Detection(NamedTuple):
    """A detected object; ``box`` is (x1, y1, x2, y2) in pixels of the original frame."""
    box: Tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 5),
                "class_id": int(self.class_id), "class_name": self.class_name}
