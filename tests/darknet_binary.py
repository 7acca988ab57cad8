"""Darknet itself as the reference: Debian's ``darknet`` package (pjreddie's darknet, 2018),
installed by ``.ci/run``; the tests that use it skip with a reason where it is missing.

Two ways in:

- ``darknet detector valid DATA CFG WEIGHTS`` (the command line; headless): the devkit
  result files ``comp4_det_test_<class>.txt`` of a list of at least 4 images, at darknet's
  own thresholds (score > 0.005, NMS 0.45), boxes 1-based and clipped to [1, w] x [1, h];
- ``darknet_probe`` (tests/darknet_probe.c, compiled here against Debian's libdarknet): the
  same functions one by one, with every float printed exactly, and the letterboxed input,
  the decoded image and the network's output dumped (``Probe``).
"""
import hashlib
import os
import shutil
import subprocess
from typing import Dict, List, NamedTuple, Sequence

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DARKNET = shutil.which("darknet")
DARKNET_INCLUDE = "/usr/lib/darknet/include"
DARKNET_LIB = "/usr/lib/darknet"
DARKNET_DATA = "/usr/share/darknet/data"
CC = shutil.which("gcc") or shutil.which("cc")
REALDATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "realdata", "photos"))

needs_darknet = pytest.mark.skipif(
    DARKNET is None or not os.path.isfile(os.path.join(DARKNET_LIB, "libdarknet.so")),
    reason="darknet is not installed (Debian: apt-get install darknet; .ci/run installs it)")
needs_probe = pytest.mark.skipif(
    CC is None or not os.path.isfile(os.path.join(DARKNET_INCLUDE, "darknet.h")),
    reason="the darknet probe needs a C compiler and darknet.h (apt-get install darknet gcc)")
needs_realdata = pytest.mark.skipif(
    not os.path.isdir(REALDATA), reason=f"real photos not here ({REALDATA})")


def real_photos(names: Sequence[str]) -> List[str]:
    return [os.path.join(REALDATA, n) for n in names]


def build_probe(out_dir: str) -> str:
    """The probe binary, compiled once per source into ``out_dir``."""
    src = os.path.join(HERE, "darknet_probe.c")
    with open(src, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:12]
    exe = os.path.join(out_dir, f"darknet_probe_{key}")
    if not os.path.isfile(exe):
        subprocess.run([CC, "-O1", "-o", exe, src, f"-I{DARKNET_INCLUDE}", f"-L{DARKNET_LIB}",
                        f"-Wl,-rpath,{DARKNET_LIB}", "-ldarknet", "-lm"], check=True,
                       capture_output=True, timeout=300)
    return exe


class ProbeDet(NamedTuple):
    image: int
    det: int            # darknet's detection index (the cell: anchor, row, col) without NMS
    cls: int
    prob: float
    box: np.ndarray     # x, y, w, h in frame pixels (centre and size), unclipped


class Probe:
    """Runs ``darknet_probe`` on a cfg and weights (in the cfg's folder, as darknet runs)."""

    def __init__(self, exe: str):
        self.exe = exe

    def run(self, cfg: str, weights: str, images: Sequence[str], out_dir: str,
            thresh: float = 0.0, hier: float = 0.5, nms: float = 0.0,
            tree_fix: bool = True) -> List[ProbeDet]:
        os.makedirs(out_dir, exist_ok=True)
        cmd = [self.exe, os.path.abspath(cfg), os.path.abspath(weights), out_dir, repr(thresh),
               repr(hier), repr(nms), str(int(tree_fix))] + [os.path.abspath(p) for p in images]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             cwd=os.path.dirname(os.path.abspath(cfg)))
        assert res.returncode == 0, res.stderr[-2000:]
        out = []
        for line in res.stdout.splitlines():
            f = line.split()
            out.append(ProbeDet(int(f[0]), int(f[1]), int(f[2]), float(f[3]),
                                np.array([float(v) for v in f[4:8]])))
        return out

    @staticmethod
    def dump(out_dir: str, image: int, what: str) -> np.ndarray:
        return np.fromfile(os.path.join(out_dir, f"{image}.{what}"), "<f4")


def run_valid(cfg: str, weights: str, images: Sequence[str], names: Sequence[str],
              work: str) -> Dict[str, List[tuple]]:
    """``darknet detector valid`` on ``images`` (at least 4): {image id: [(class, score, x1,
    y1, x2, y2), ...]} with darknet's 1-based clipped boxes, as its result files hold them."""
    assert len(images) >= 4, "darknet's valid crashes on lists of fewer than 4 images"
    os.makedirs(os.path.join(work, "results"), exist_ok=True)
    with open(os.path.join(work, "valid.list"), "w") as f:
        f.write("".join(os.path.abspath(p) + "\n" for p in images))
    with open(os.path.join(work, "names.list"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    with open(os.path.join(work, "valid.data"), "w") as f:
        f.write(f"classes={len(names)}\nvalid={work}/valid.list\nnames={work}/names.list\n"
                f"results={work}/results\neval=voc\n")
    res = subprocess.run([DARKNET, "detector", "valid", os.path.join(work, "valid.data"),
                          os.path.abspath(cfg), os.path.abspath(weights)],
                         capture_output=True, text=True, timeout=600, cwd=work)
    assert res.returncode == 0, res.stderr[-2000:]
    found: Dict[str, List[tuple]] = {}
    for k, name in enumerate(names):
        with open(os.path.join(work, "results", f"comp4_det_test_{name}.txt")) as f:
            for line in f:
                image_id, *vals = line.split()
                found.setdefault(image_id, []).append((k,) + tuple(float(v) for v in vals))
    return found


def darknet_printed(box_xyxy, frame_w: int, frame_h: int) -> np.ndarray:
    """Our 0-based box (x1, y1, x2, y2) as darknet's valid prints it: +1, clipped to
    [1, w] x [1, h]."""
    b = np.asarray(box_xyxy, np.float64) + 1
    return np.clip(b, 1, [frame_w, frame_h, frame_w, frame_h])


def frames_as_png(frames: Sequence[np.ndarray], folder: str, prefix: str = "f") -> List[str]:
    """Write BGR frames as PNG (lossless: darknet and we decode the same pixels)."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, fr in enumerate(frames):
        p = os.path.join(folder, f"{prefix}{i}.png")
        cv2.imwrite(p, fr)
        paths.append(p)
    return paths


def synthetic_frames(sizes: Sequence[tuple], seed: int = 0) -> List[np.ndarray]:
    """Smooth random BGR frames of (h, w) sizes (blocks of colour, so a network sees edges)."""
    import cv2
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        fr = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        out.append(np.clip(fr.astype(np.int16) + rng.integers(-20, 21, fr.shape), 0, 255)
                   .astype(np.uint8))
    return out


def ours_by_cell(decoded, lb, conf: float = 0.0) -> Dict[tuple, tuple]:
    """Our decode as darknet's detections without NMS: {(cell, class): (score, x, y, w, h
    in frame pixels, unclipped)} for every score above ``conf``."""
    from detector.postprocess import darknet_frame_boxes
    boxes, scores = decoded
    pix = darknet_frame_boxes(boxes, lb)
    cells, cls = np.nonzero(scores > conf)
    return {(int(c), int(k)): (float(scores[c, k]), pix[c]) for c, k in zip(cells, cls)}


def compare_cells(theirs: Sequence[ProbeDet], ours: Dict[tuple, tuple], image: int):
    """(max box difference in pixels, max score difference, darknet's count, ours) of every
    detection darknet printed for ``image`` against ours of the same cell and class."""
    mine = [d for d in theirs if d.image == image]
    max_box = max_score = 0.0
    missing = 0
    for d in mine:
        got = ours.get((d.det, d.cls))
        if got is None:
            missing += 1
            continue
        score, box = got
        max_score = max(max_score, abs(score - d.prob))
        xyxy_d = np.r_[d.box[:2] - d.box[2:] / 2, d.box[:2] + d.box[2:] / 2]
        xyxy_o = np.r_[box[:2] - box[2:] / 2, box[:2] + box[2:] / 2]
        max_box = max(max_box, float(np.abs(xyxy_d - xyxy_o).max()))
    return max_box, max_score, len(mine), len(ours), missing
