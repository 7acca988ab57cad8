"""The data/eval modules import no torch, have no import-time side effects, run on 3.8."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO, cli_env

MODULES = ["detector.data.boxes", "detector.data.dataset_yaml", "detector.data.voc",
           "detector.data.synth", "detector.data.augment", "detector.data.batches",
           "detector.eval.dets",
           "detector.eval.voc_ap", "detector.eval.coco", "detector.eval.results",
           "detector.eval.plots", "detector.eval.report", "detector.train.anchors"]


def test_no_torch_no_matplotlib_no_pycocotools_at_import():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES) +
            "bad = [m for m in ('torch', 'matplotlib', 'pycocotools', 'cv2') if m in sys.modules]\n"
            "print(bad)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]" and p.stderr == ""


def test_python38_compatible():
    import importlib.util
    import os
    if importlib.util.find_spec("vermin") is None:
        import pytest
        pytest.skip("vermin not installed")
    files = [os.path.join(REPO, *m.split(".")) + ".py" for m in MODULES]
    p = subprocess.run([sys.executable, "-c", "import sys; from vermin.main import main; "
                        "sys.exit(main())", "-t=3.8-", "--no-tips", "--violations", *files],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
