"""The CUDA C sources of the engine (``kernels/``, installed as ``detector.kernels``).

Both backends build from the same files: ``all_kernels.cu`` is the one compilation unit, and
``fastdsc.cuh`` holds the tile sizes that ``launch.py`` reads. Build outputs (cubins, the
emulator library) are cached under the user cache directory, keyed by ``source_hash``.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Dict, Iterable, List

from ..host import cache_dir

MAIN_SOURCE = "all_kernels.cu"
COMMON_HEADER = "fastdsc.cuh"
SOURCE_SUFFIXES = (".cu", ".cuh", ".h")


def kernel_dir() -> str:
    """``detector.kernels`` in an installed package; the top-level ``kernels/`` folder next to
    ``detector/`` in a source checkout (where setup.cfg's package_dir mapping is not active)."""
    try:
        from ..kernels import KERNEL_DIR   # type: ignore[import]
        return KERNEL_DIR
    except ImportError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "kernels")
    if not os.path.isfile(os.path.join(path, MAIN_SOURCE)):
        raise RuntimeError(f"kernel sources not found (looked for detector.kernels and {path})")
    return path


def source_files() -> List[str]:
    """Every kernel source and header, sorted (absolute paths)."""
    d = kernel_dir()
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(SOURCE_SUFFIXES))


def source_hash(extra: Iterable[str] = ()) -> str:
    """A short hash of all kernel sources plus ``extra`` strings (flags, compiler version)."""
    h = hashlib.sha256()
    for path in source_files():
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    for e in extra:
        h.update(str(e).encode() + b"\0")
    return h.hexdigest()[:16]


def build_dir(*parts: str) -> str:
    """Where build outputs go: ``host.cache_dir(*parts)``, created (never under the working
    directory)."""
    path = cache_dir(*parts)
    os.makedirs(path, exist_ok=True)
    return path


_DEFINE = re.compile(r"^#define\s+(FDSC_\w+)\s+(-?\d+)\b", re.M)
_constants: Dict[str, int] = {}


def constants() -> Dict[str, int]:
    """The integer ``#define FDSC_*`` constants of ``fastdsc.cuh`` (tile sizes, codes)."""
    if not _constants:
        with open(os.path.join(kernel_dir(), COMMON_HEADER), encoding="utf-8") as f:
            _constants.update({k: int(v) for k, v in _DEFINE.findall(f.read())})
    return dict(_constants)
