"""Dockerfile.l4t: what it copies exists and reaches the build context, its defaults are the
documented ones, and the board image never gets torch. (No Docker engine runs here; the
image itself is built and run on a board, see docs/jetson.md.)"""
from __future__ import annotations

import configparser
import importlib.util
import os
import re

import pytest

from jetson_helpers import (DOCKERFILE, REPO, copy_sources, dockerfile_instructions,
                            dockerignore_rules, exec_form, ignored)


def _args(keyword):
    return [a for k, a in dockerfile_instructions() if k == keyword]


def _arg_defaults():
    out = {}
    for a in _args("ARG"):
        name, _, value = a.partition("=")
        out[name] = value
    return out


def test_base_image_defaults_to_jetpack46_l4t_r32_7():
    inst = dockerfile_instructions()
    first_from = next(i for i, (k, _) in enumerate(inst) if k == "FROM")
    before = dict(a.partition("=")[::2] for k, a in inst[:first_from] if k == "ARG")
    assert before.get("BASE_IMAGE") == "nvcr.io/nvidia/l4t-base:r32.7.1"
    assert inst[first_from][1] == "${BASE_IMAGE}"
    text = open(DOCKERFILE, encoding="utf-8").read()
    # JetPack 5 and 6 bases are documented next to the default.
    assert re.search(r"l4t-jetpack:r35\.\d+\.\d+", text)
    assert re.search(r"l4t-jetpack:r36\.\d+\.\d+", text)


def test_build_args_python38_and_tx2_arch():
    args = _arg_defaults()
    assert args["PYTHON_VERSION"] == "3.8"
    assert args["CUDA_ARCH"] == "sm_62"


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = copy_sources()
    assert {"setup.cfg", "pyproject.toml", "detector", "kernels",
            "scripts/jetson-requirements.txt"} <= set(sources)
    rules = dockerignore_rules(os.path.join(REPO, ".dockerignore"))
    for src in sources:
        assert not os.path.isabs(src) and ".." not in src.split("/"), src
        path = os.path.join(REPO, src)
        assert os.path.exists(path), f"Dockerfile.l4t copies {src}, which does not exist"
        assert not ignored(src, rules), f".dockerignore leaves {src} out of the build context"
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for name in files:
                    rel = os.path.relpath(os.path.join(root, name), REPO)
                    if name.endswith((".py", ".yaml", ".cu", ".cuh", ".h")):
                        assert not ignored(rel, rules), f".dockerignore drops {rel}"


def test_dockerignore_keeps_heavy_paths_out():
    rules = dockerignore_rules(os.path.join(REPO, ".dockerignore"))
    for rel in (".venv/bin/python", ".git/HEAD", "weights/yolov2-voc.weights",
                "data/VOCdevkit/VOC2007/JPEGImages/000001.jpg", "detector/__pycache__/api.cpython-38.pyc"):
        assert ignored(rel, rules), rel


def test_default_command_is_detect_csi0_with_the_cuda_backend():
    (entry,) = _args("ENTRYPOINT")
    (cmd,) = _args("CMD")
    assert exec_form(entry) == ["detector"]
    cmd = exec_form(cmd)
    assert cmd is not None and cmd[:2] == ["detect", "csi://0"]
    assert cmd[cmd.index("--backend") + 1] == "cuda"
    # The default command parses with the real CLI.
    from detector.cli import build_parser
    args = build_parser().parse_args(cmd)
    assert args.source == ["csi://0"] and args.backend == "cuda"


def test_package_installed_with_cuda_extra_and_never_torch():
    runs = " ".join(_args("RUN"))
    assert re.search(r'pip install "\$\{PREFIX\}/src\[cuda\]"', runs)
    assert "torch" not in open(os.path.join(REPO, "scripts", "jetson-requirements.txt")).read() \
        .split("#")[0]
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    assert cfg["options"]["python_requires"].strip() == ">=3.8"
    required = cfg["options"]["install_requires"]
    cuda = cfg["options.extras_require"]["cuda"]
    assert "torch" not in required and "torch" not in cuda
    assert "pycuda" in cuda


def test_requirements_leave_opencv_to_the_installer():
    reqs = [line.split("#")[0].strip() for line in
            open(os.path.join(REPO, "scripts", "jetson-requirements.txt"), encoding="utf-8")]
    reqs = [r for r in reqs if r]
    names = {re.split(r"[<>=!~ \[]", r)[0].lower() for r in reqs}
    assert not any("opencv" in n for n in names)
    assert {"numpy", "pycuda", "pyyaml", "safetensors"} <= names
    assert any(r.replace(" ", "").startswith("numpy") and "<2" in r for r in reqs)


def test_precompile_entry_point_named_by_the_dockerfile():
    runs = [a for a in _args("RUN") if "precompile" in a]
    assert runs, "Dockerfile.l4t must precompile the kernels for CUDA_ARCH"
    m = re.search(r"python -m ([\w.]+) --arch", runs[0])
    assert m, runs[0]
    module = m.group(1)
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} (the kernels' precompile entry point that Dockerfile.l4t and "
                    f"scripts/install_jetson.sh call) is not in this tree yet")
    import subprocess
    import sys
    from conftest import cli_env
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, env=cli_env(), cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "--arch" in proc.stdout, proc.stderr[-2000:]
