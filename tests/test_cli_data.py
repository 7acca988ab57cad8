"""``detector synth`` and ``detector anchors`` end to end (subprocess)."""
from __future__ import annotations

import os

import pytest

from conftest import REPO, assert_user_error, run_cli

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(REPO, "detector", "cli.py")),
                                reason="detector/cli.py not there yet (the lead wires it)")


def test_synth_then_anchors(tmp_path):
    out = tmp_path / "ds"
    p = run_cli("synth", out, "--train", 6, "--val", 2, "--size", 96, "--seed", 5)
    assert p.returncode == 0, p.stderr
    assert "wrote 8 images" in p.stdout and (out / "data.yaml").is_file()
    assert len(os.listdir(out / "VOCsynth" / "JPEGImages")) == 8
    p = run_cli("anchors", "--data", out / "data.yaml", "--num", 3)
    assert p.returncode == 0, p.stderr
    assert "anchors: [[" in p.stdout


def test_user_errors(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert_user_error(run_cli("synth", tmp_path / "full", "--train", 2, "--val", 1),
                      "not empty")
    assert_user_error(run_cli("anchors", "--data", tmp_path / "missing.yaml"), "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [a]\ntrain: [nodir]\n")
    assert_user_error(run_cli("anchors", "--data", bad), "train[0]", "DIR/LIST")
