#!/usr/bin/env bash
# The CUDA backend on a real GPU in one run: installs pycuda from carried wheels, runs the
# cuda tests (also under compute-sanitizer) and the GPU benchmark, writes JSON + Markdown.
# See scripts/gpu_check.py (--help) and docs/kernels.md ("Measured on a GPU").
#   scripts/gpu_wheels.sh                  # here, with internet: prepares .whl/
#   scripts/gpu_check.sh --dry-run         # here: checks everything a GPU is not needed for
#   scripts/gpu_check.sh --out "$OUT"      # on the GPU machine
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "${PYTHON:-python3}" "$here/gpu_check.py" "$@"
