#!/usr/bin/env bash
# Install FastDSC-YOLO on a Jetson board without Docker (JetPack 4.6, 5.x or 6.x).
#
# Creates a virtual environment, builds pycuda against JetPack's CUDA, installs the package
# with `pip install --no-deps` plus an explicit list of dependencies (so pip never replaces
# JetPack's OpenCV, numpy or CUDA), and precompiles the CUDA kernels for the board's GPU.
# Nothing outside the virtual environment is changed, except that python3.8 may be
# installed with apt on JetPack 4.6 (whose own Python is 3.6).
#
#   scripts/install_jetson.sh                      # defaults, see --help
#   scripts/install_jetson.sh --dry-run            # print what it would do
#
# OpenCV (--opencv): "system" uses JetPack's cv2 (GStreamer and GUI built in) through a venv
# with --system-site-packages; it works when the chosen Python is the one JetPack's cv2 was
# built for (JetPack 5: 3.8, JetPack 6: 3.10). "pypi" installs opencv-python-headless into the
# venv only (JetPack 4.6 with Python 3.8; csi:// then runs through a gst-launch-1.0 pipe and
# there is no --show window). "auto" (default) picks system when the Python can import cv2.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/install_jetson.sh [options]

  --python PY        interpreter (default: python3 if it is >= 3.8, else python3.8)
  --venv DIR         virtual environment (default: ~/.venvs/fastdsc-yolo)
  --arch sm_NN       GPU architecture for the kernels (default: from the board's
                     device tree: sm_53 Nano/TX1, sm_62 TX2, sm_72 Xavier, sm_87 Orin)
  --opencv MODE      auto | system | pypi (default: auto)
  --cuda-home DIR    CUDA toolkit (default: $CUDA_HOME or /usr/local/cuda)
  --minimal          skip onnx + onnxruntime (the ort backend and ONNX export)
  --no-apt           never call apt-get (fail if python3.8 is missing)
  --no-precompile    do not precompile the kernels
  --dry-run          print the commands instead of running them
  -h, --help         this help
EOF
}

die() {
    echo "install_jetson: error: $*" >&2
    exit 1
}

log() {
    echo "install_jetson: $*" >&2
}

DRY_RUN=0
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=""
VENV="${HOME}/.venvs/fastdsc-yolo"
ARCH=""
OPENCV="auto"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
MINIMAL=0
USE_APT=1
PRECOMPILE=1

while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON="$2"; shift 2 ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a value"; VENV="$2"; shift 2 ;;
        --arch) [ $# -ge 2 ] || die "--arch needs a value"; ARCH="$2"; shift 2 ;;
        --opencv) [ $# -ge 2 ] || die "--opencv needs a value"; OPENCV="$2"; shift 2 ;;
        --cuda-home) [ $# -ge 2 ] || die "--cuda-home needs a value"; CUDA_HOME="$2"; shift 2 ;;
        --minimal) MINIMAL=1; shift ;;
        --no-apt) USE_APT=0; shift ;;
        --no-precompile) PRECOMPILE=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

case "$OPENCV" in
    auto|system|pypi) ;;
    *) die "--opencv must be auto, system or pypi (got '$OPENCV')" ;;
esac
if [ -n "$ARCH" ] && ! [[ "$ARCH" =~ ^sm_[0-9]+$ ]]; then
    die "--arch must look like sm_62 (got '$ARCH')"
fi

# ---- the board's GPU architecture ------------------------------------------------------
detect_arch() {
    local compat=/proc/device-tree/compatible
    [ -r "$compat" ] || return 1
    case "$(tr '\0' ' ' < "$compat")" in
        *tegra234*) echo sm_87 ;;
        *tegra194*) echo sm_72 ;;
        *tegra186*) echo sm_62 ;;
        *tegra210*) echo sm_53 ;;
        *) return 1 ;;
    esac
}
if [ -z "$ARCH" ] && [ "$PRECOMPILE" = 1 ]; then
    ARCH="$(detect_arch)" || die "cannot tell the Jetson's GPU from /proc/device-tree/compatible; pass --arch (sm_62 for a TX2) or --no-precompile"
    log "GPU architecture: $ARCH"
fi

# ---- Python >= 3.8 ---------------------------------------------------------------------
py_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null
}
if [ -z "$PYTHON" ]; then
    if command -v python3 >/dev/null 2>&1 && py_ok python3; then
        PYTHON=python3
    else
        PYTHON=python3.8
    fi
fi
if ! command -v "$PYTHON" >/dev/null 2>&1 || ! py_ok "$PYTHON"; then
    [ "$PYTHON" = python3.8 ] || die "$PYTHON is missing or older than 3.8"
    [ "$USE_APT" = 1 ] || die "python3.8 is missing (sudo apt-get install python3.8 python3.8-dev python3.8-venv)"
    SUDO=()
    [ "$(id -u)" = 0 ] || SUDO=(sudo)
    log "installing python3.8 from the distribution (JetPack 4.6 ships Python 3.6)"
    run "${SUDO[@]}" apt-get update
    run "${SUDO[@]}" apt-get install -y --no-install-recommends python3.8 python3.8-dev python3.8-venv build-essential
fi
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3.8)"
log "Python: $PYTHON ($PYVER)"

# ---- CUDA (JetPack's; never installed or changed here) ----------------------------------
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
    if [ "$DRY_RUN" = 1 ]; then
        log "warning: $CUDA_HOME/bin/nvcc not found (a board needs JetPack's CUDA toolkit)"
    else
        die "$CUDA_HOME/bin/nvcc not found: install JetPack's CUDA toolkit (sudo apt-get install nvidia-jetpack) or pass --cuda-home"
    fi
fi
export CUDA_HOME
export CUDA_ROOT="$CUDA_HOME"
export PATH="$CUDA_HOME/bin:$PATH"
export LD_LIBRARY_PATH="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# numpy's OpenBLAS misdetects the TX2's Denver / Xavier's Carmel cores ("Illegal instruction").
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-ARMV8}"

# ---- OpenCV: JetPack's, or a headless wheel inside the venv ------------------------------
if [ "$OPENCV" = auto ]; then
    if "$PYTHON" -c 'import cv2' >/dev/null 2>&1; then
        OPENCV=system
    else
        OPENCV=pypi
    fi
fi
if [ "$OPENCV" = system ] && [ "$DRY_RUN" = 0 ] && ! "$PYTHON" -c 'import cv2' >/dev/null 2>&1; then
    die "--opencv system: $PYTHON cannot import JetPack's cv2 (it is built for another Python); use --opencv pypi"
fi
log "OpenCV: $OPENCV"

# ---- the virtual environment and the packages --------------------------------------------
VENV_ARGS=()
[ "$OPENCV" = system ] && VENV_ARGS=(--system-site-packages)
if [ ! -x "$VENV/bin/python" ]; then
    run "$PYTHON" -m venv "${VENV_ARGS[@]}" "$VENV"
else
    want=false
    [ "$OPENCV" = system ] && want=true
    if ! grep -qi "^include-system-site-packages *= *$want" "$VENV/pyvenv.cfg" 2>/dev/null; then
        die "$VENV exists with include-system-site-packages != $want (--opencv $OPENCV); remove it or pass another --venv"
    fi
    log "reusing $VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check)

# Ubuntu 18.04's venv pip is 9.0: upgrade it alone first (the aarch64 manylinux wheels need >= 20.3).
run "${PIP[@]}" --upgrade pip
run "${PIP[@]}" --upgrade setuptools wheel
# Explicit dependencies: numpy < 2 keeps JetPack's cv2 importable; pycuda builds from source.
run "${PIP[@]}" -r "$ROOT/scripts/jetson-requirements.txt"
EXTRA=()
[ "$OPENCV" = pypi ] && EXTRA+=("opencv-python-headless>=4.5")
[ "$MINIMAL" = 1 ] || EXTRA+=("onnx>=1.12" "onnxruntime>=1.10")
if [ ${#EXTRA[@]} -gt 0 ]; then
    run "${PIP[@]}" "${EXTRA[@]}"
fi
# The package itself, without letting pip resolve (and replace) anything.
run "${PIP[@]}" --no-deps "$ROOT"

if [ "$PRECOMPILE" = 1 ]; then
    XDG="${XDG_CACHE_HOME:-$HOME/.cache}"
    log "precompiling kernels for $ARCH into $XDG/fastdsc-yolo"
    run "$VPY" -m detector.engine.precompile --arch "$ARCH"
fi

if [ "$DRY_RUN" = 0 ]; then
    "$VPY" - <<'PY'
import importlib.util
import cv2
gst = any("GStreamer" in line and "YES" in line
          for line in cv2.getBuildInformation().splitlines())
print("cv2 %s from %s (GStreamer: %s)" % (cv2.__version__, cv2.__file__, "yes" if gst else "no"))
print("pycuda: %s" % ("yes" if importlib.util.find_spec("pycuda") else "no"))
print("torch: %s" % ("present (not needed)" if importlib.util.find_spec("torch") else "absent"))
PY
    "$VENV/bin/detector" --version
fi
# JetPack's OpenCV has a GUI; the headless wheel has none: show the stream in a browser then.
VIEW="--show"
[ "$OPENCV" = system ] || VIEW="--serve 127.0.0.1:8080"
cat >&2 <<EOF
install_jetson: done. Run:
  export OPENBLAS_CORETYPE=ARMV8
  $VENV/bin/detector detect csi://0 --weights WEIGHTS.safetensors --backend cuda $VIEW
EOF
