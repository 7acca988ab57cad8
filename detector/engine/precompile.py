"""Precompile the CUDA kernels for a GPU architecture, ahead of the first run.

    python -m detector.engine.precompile --arch sm_62      # Jetson TX2

Needs nvcc (or NVRTC) only: no GPU, no pycuda, no torch. The cubin goes to the user cache
(``$XDG_CACHE_HOME/fastdsc-yolo/cubin``), where the ``cuda`` backend looks for it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import UserError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m detector.engine.precompile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, action="append",
                   help="target architecture, e.g. sm_62 (TX2), sm_72 (Xavier), sm_87 (Orin); "
                        "repeat for several")
    args = p.parse_args(argv)
    from .cuda import build_cubin, cubin_name
    from .kernel_sources import build_dir
    try:
        for arch in args.arch:
            if not re.fullmatch(r"sm_\d{2,3}", arch):
                raise UserError(f"--arch {arch!r}: expected sm_XY, e.g. sm_62")
            data = build_cubin(arch)
            path = os.path.join(build_dir("cubin"), cubin_name(arch))
            print(f"{arch}: {len(data)} bytes ({path if os.path.exists(path) else 'packaged'})")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
