"""scripts/gpu_check.sh without a GPU: the dry run checks what it can, the wheel checks accept
the right files and refuse the wrong ones, and a run's Markdown lands in the docs section."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "gpu_check.sh")


def load_module():
    spec = importlib.util.spec_from_file_location("gpu_check",
                                                  os.path.join(REPO, "scripts", "gpu_check.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod              # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gc = load_module()


def write_wheel(folder, filename, name=None):
    """A minimal real wheel: a zip with the dist-info METADATA that names it."""
    dist, version = filename.split("-")[:2]
    path = os.path.join(folder, filename)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: {name or dist}\nVersion: {version}\n")
    return path


GOOD = ["pycuda-2026.1-cp312-cp312-linux_x86_64.whl", "pytools-2026.1.1-py3-none-any.whl",
        "platformdirs-4.14.9-py3-none-any.whl", "mako-1.4.3-py3-none-any.whl",
        "siphash24-1.9-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "defusedxml-0.7.1-py2.py3-none-any.whl",
        "pycocotools-2.0.11-cp312-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"]


def test_wheel_tags_decide_what_installs_on_the_device():
    assert gc.wheel_matches("siphash24-1.9-cp312-cp312-manylinux2014_x86_64.whl", "cp312")
    assert not gc.wheel_matches("siphash24-1.9-cp311-cp311-manylinux2014_x86_64.whl", "cp312")
    assert not gc.wheel_matches("siphash24-1.9-cp312-cp312-manylinux2014_aarch64.whl", "cp312")
    # abi3 wheels built for an older CPython install on newer ones, not the reverse
    assert gc.wheel_matches("pycocotools-2.0.11-cp310-abi3-manylinux_2_17_x86_64.whl", "cp312")
    assert not gc.wheel_matches("pycocotools-2.0.11-cp313-abi3-manylinux_2_17_x86_64.whl", "cp312")
    assert gc.wheel_matches("mako-1.4.3-py3-none-any.whl", "cp38")


def test_find_wheels_accepts_a_complete_folder(tmp_path):
    for f in GOOD:
        write_wheel(str(tmp_path), f)
    found = gc.find_wheels(str(tmp_path), "cp312")
    assert {d: v["status"] for d, v in found.items()} == {d: "ready" for d in gc.WHEELS}


def test_find_wheels_names_what_is_wrong(tmp_path):
    for f in GOOD[1:]:
        write_wheel(str(tmp_path), f)
    # pycuda for another Python, and a file that claims to be mako but is something else
    write_wheel(str(tmp_path), "pycuda-2026.1-cp311-cp311-linux_x86_64.whl")
    os.remove(os.path.join(tmp_path, GOOD[3]))
    write_wheel(str(tmp_path), GOOD[3], name="not-mako")
    found = gc.find_wheels(str(tmp_path), "cp312")
    assert found["pycuda"]["status"] == "missing" and "cp312" in found["pycuda"]["why"]
    assert found["mako"]["status"] == "missing" and "not-mako" in found["mako"]["why"]
    assert found["pytools"]["status"] == "ready"
    # the sdist is the fallback for pycuda (built on the device)
    (tmp_path / "pycuda-2026.1.tar.gz").write_bytes(b"")
    found = gc.find_wheels(str(tmp_path), "cp312")
    assert found["pycuda"]["status"] == "ready" and found["pycuda"]["file"].endswith(".tar.gz")


@pytest.mark.slow
@pytest.mark.torch          # counts the GPU tests, which need torch to collect
def test_dry_run_checks_every_step_without_a_gpu(tmp_path):
    wheels, out = tmp_path / "wheels", tmp_path / "out"
    wheels.mkdir()
    for f in GOOD[1:]:                                  # everything but pycuda
        write_wheel(str(wheels), f)
    p = subprocess.run([SCRIPT, "--dry-run", "--wheels", str(wheels), "--out", str(out)],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHON=sys.executable))
    report = json.loads((out / "gpu_check.json").read_text())
    steps = report["steps"]
    assert report["dry_run"] is True and report["python_tag"] == gc.DEVICE_PYTHON
    assert list(steps) == [name for name, _, _ in gc.STEPS]
    assert steps["files"]["status"] == "ready", steps["files"]
    assert set(steps["files"]["commands"]) == set(gc.COMMANDS)
    assert steps["install"]["status"] == "missing: pycuda", steps["install"]
    assert steps["pytest"]["status"] == "ready" and steps["pytest"]["collected"] > 10, steps["pytest"]
    assert steps["bench"]["status"] == "ready", steps["bench"]
    assert p.returncode == 1 and "not ready: install" in p.stderr, p.stderr
    # nothing is written that only a GPU run could produce
    assert not (out / "gpu_check.md").exists() and not (out / "bench.json").exists()


def test_update_docs_replaces_only_the_marked_section(tmp_path):
    doc = tmp_path / "kernels.md"
    doc.write_text(f"# Kernels\n\nbefore\n\n{gc.BEGIN}\n\n*Empty*\n\n{gc.END}\n\nafter\n")
    md = tmp_path / "gpu_check.md"
    md.write_text("Measured by the script.\n\n| a | b |\n")
    gc.update_docs(str(md), str(doc))
    text = doc.read_text()
    assert "*Empty*" not in text and "Measured by the script." in text
    assert text.startswith("# Kernels\n\nbefore\n\n") and text.endswith(f"{gc.END}\n\nafter\n")
    gc.update_docs(str(md), str(doc))                   # idempotent
    assert doc.read_text() == text


def test_markdown_reports_each_step_and_the_benchmark_ratio():
    report = {"steps": {
        "environment": {"status": "ok", "date": "D", "commit": "abc", "python": "3.12",
                        "gpu": {"name": "GPU X", "compute_cap": "9.0", "driver_version": "1"}},
        "pytest": {"status": "failed", "counts": {"passed": 3, "failed": 1, "skipped": 0},
                   "tests": {"t::a": "passed", "t::b": "failed"}},
        "bench": {"status": "ok", "bench": {"results": [
            {"model": "m", "size": 416, "impl": "torch-cuda", "median_ms": 4.0},
            {"model": "m", "size": 416, "impl": "cuda", "median_ms": 2.0}]}}}}
    md = gc.markdown(report)
    assert "GPU X" in md and "commit abc" in md
    assert "| pytest | failed |" in md and "failed: t::b" in md
    assert "| m@416 | cuda | 2.00 | 500 | 2.00x |" in md
