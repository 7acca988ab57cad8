"""The package builds and installs from exactly what Dockerfile.l4t copies, without the
`cuda` extra (no pycuda) and without torch being required, and the installed copy finds
its model specs and CUDA sources without the source tree."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

from jetson_helpers import REPO, copy_sources, dockerignore_rules, ignored

PROBE = "jetson_probe_kernel.cu"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the Dockerfile's build context (+ a probe .cu file)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    rules = dockerignore_rules(os.path.join(REPO, ".dockerignore"))
    for rel in copy_sources():
        if rel.startswith("scripts/"):
            continue                      # requirements only; not part of the package
        path = os.path.join(REPO, rel)
        if os.path.isdir(path):
            shutil.copytree(path, src / rel, ignore=lambda d, names: [
                n for n in names if ignored(os.path.relpath(os.path.join(d, n), REPO), rules)])
        else:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / rel)
    (src / "kernels" / PROBE).write_text("__global__ void probe() {}\n")
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--disable-pip-version-check", "-q",
                           "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = glob.glob(str(out / "*.whl"))
    return whl


def test_wheel_ships_kernels_and_model_specs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert f"detector/kernels/{PROBE}" in names
    for cu in glob.glob(os.path.join(REPO, "kernels", "*.cu*")):
        assert "detector/kernels/" + os.path.basename(cu) in names
    specs = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "detector", "models",
                                                                   "specs", "*.yaml"))}
    assert specs and {f"detector/models/specs/{s}" for s in specs} <= names
    assert "detector/__main__.py" in names and "detector/kernels/__init__.py" in names
    shipped = {os.path.relpath(p, REPO) for pattern in ("detector/footage/*",
                                                         "detector/io/darknet_files/*")
               for p in glob.glob(os.path.join(REPO, pattern))}
    assert "detector/footage/README.md" in shipped and shipped <= names
    assert not any(n.startswith(("tests/", "kernels/")) for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Requires-Python: >=3.8" in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert any("pycuda" in r and "extra == \"cuda\"" in r for r in requires)
    assert not any("torch" in r and "extra" not in r for r in requires)
    assert not any("pycuda" in r and "extra" not in r for r in requires)


def test_wheel_installs_without_the_cuda_extra(wheel, tmp_path):
    """pip install --no-deps into a fresh venv that sees the shared environment's packages
    (like --system-site-packages on a board); the installed copy runs from outside the repo."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(str(env_dir))
    py = str(env_dir / "bin" / "python")
    # The shared environment's site-packages come after the venv's own (as system site
    # packages do), so `import detector` can only find the installed copy.
    site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import site as host_site
    with open(os.path.join(site, "zz_shared_env.pth"), "w") as f:
        f.write("\n".join(p for p in host_site.getsitepackages() if os.path.isdir(p)) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps",
                           "--no-index", "--disable-pip-version-check", "-q", wheel],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "no such option: --python" in proc.stderr:
        pytest.skip("pip too old for --python")
    assert proc.returncode == 0, proc.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    run = dict(capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    out = subprocess.run([py, "-m", "detector", "--help"], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "detect" in out.stdout and "export" in out.stdout
    out = subprocess.run([str(env_dir / "bin" / "detector"), "--version"], **run)
    assert out.returncode == 0 and "fastdsc-yolo" in out.stdout, out.stderr[-2000:]

    check = (
        "import importlib.util, os, numpy as np, detector\n"
        "from detector.kernels import KERNEL_DIR\n"
        "from detector.models.spec_yaml import zoo_names\n"
        "root = os.path.dirname(detector.__file__)\n"
        f"assert root.startswith({str(env_dir)!r}), root\n"
        "assert KERNEL_DIR.startswith(root), KERNEL_DIR\n"
        f"assert os.path.isfile(os.path.join(KERNEL_DIR, {PROBE!r}))\n"
        "assert 'yolov2-tiny-voc-fastdsc' in zoo_names()\n"
        "print('pycuda', importlib.util.find_spec('pycuda') is not None)\n"
        "det = detector.load('random:yolov2-tiny-voc-fastdsc', backend='ort', img_size=128)\n"
        "dets = det(np.full((96, 128, 3), 127, np.uint8))\n"
        "print('ok', det.backend, type(dets).__name__)\n")
    out = subprocess.run([py, "-c", check], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok ort list" in out.stdout
