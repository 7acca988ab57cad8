"""Importing the package is cheap and side-effect free: no torch, pycuda, onnxruntime,
matplotlib or pycocotools until a feature needs them; and the code runs on Python 3.8."""
from __future__ import annotations

import importlib.util
import os
import pkgutil
import subprocess
import sys

import pytest

from conftest import REPO, cli_env

# Modules that are torch by nature (the torch model, training, conversion).
TORCH_MODULES = {"detector.models.blocks", "detector.models.yolov2", "detector.train.trainer",
                 "detector.train.region_loss", "detector.train.ema", "detector.train.device",
                 "detector.train.initial", "detector.train.loader", "detector.train.state",
                 "detector.distill.trainer", "detector.distill.loss", "detector.train.probe"}
HEAVY = ("torch", "pycuda", "onnxruntime", "matplotlib", "pycocotools", "tensorboard")


def package_modules():
    import detector
    out = ["detector"]
    for m in pkgutil.walk_packages(detector.__path__, "detector."):
        if m.name != "detector.__main__":
            out.append(m.name)
    return out


def test_importing_modules_pulls_in_no_heavy_dependency():
    mods = [m for m in package_modules() if m not in TORCH_MODULES
            and not m.startswith("detector.convert")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods) +
            f"print([m for m in {HEAVY!r} if m in sys.modules])\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", p.stdout
    assert p.stderr == ""


def test_python38_compatible():
    if importlib.util.find_spec("vermin") is None:
        pytest.skip("vermin not installed (pip install -e .[dev])")
    paths = [os.path.join(REPO, d) for d in ("detector", "kernels", "scripts", "tests")]
    p = subprocess.run([sys.executable, "-c", "import sys; from vermin.main import main; "
                        "sys.exit(main())", "-t=3.8-", "--no-tips", "--violations",
                        "--eval-annotations", *paths],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
