"""docs/jetson.md stays true: its prediction tables are what scripts/jetson_roofline.py
computes from the lowered plans, and the detector commands it shows parse with the CLI."""
from __future__ import annotations

import importlib.util
import os
import re
import shlex

import pytest

from jetson_helpers import REPO

DOC = os.path.join(REPO, "docs", "jetson.md")


@pytest.fixture(scope="module")
def doc():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def roofline():
    spec = importlib.util.spec_from_file_location(
        "jetson_roofline", os.path.join(REPO, "scripts", "jetson_roofline.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_roofline_tables_match_the_plans(doc, roofline):
    table = roofline.rows()
    assert roofline.markdown(table) in doc, "regenerate with python scripts/jetson_roofline.py"
    assert roofline.memory_markdown(table) in doc, "regenerate with python scripts/jetson_roofline.py"
    fastdsc = next(r for r in table if r["model"] == "yolov2-voc-fastdsc")
    assert round(fastdsc["gflops"], 2) == 4.64         # the FastDSC-YOLOv2 figure at 416


def test_roofline_is_a_lower_bound_on_time(roofline):
    """Each op's bound is at least its compute time and its memory time."""
    plan = roofline.model_plan("yolov2-tiny-voc-fastdsc", 160)
    p = roofline.predict(plan, 665e9, 59.7e9, 4)
    assert p["seconds"] >= max(p["compute_s"], p["memory_s"])
    assert p["seconds"] <= p["compute_s"] + p["memory_s"]
    assert p["compute_s"] == pytest.approx(plan.total_flops() / 665e9)
    faster = roofline.predict(plan, 2 * 665e9, 2 * 59.7e9, 4)
    assert faster["seconds"] == pytest.approx(p["seconds"] / 2)


def test_doc_covers_the_deployment_topics(doc):
    for needle in ("nvpmodel -m 0", "jetson_clocks", "nvarguscamerasrc", "v4l2-ctl",
                   "--runtime nvidia", "/tmp/argus_socket", "/tmp/.X11-unix", "DISPLAY",
                   "trtexec --onnx=", "--fp16", "--saveEngine=", "--minShapes=images:",
                   "detector bench", "predictions", "default-runtime", "install_jetson.sh",
                   "l4t-base:r32.7.1", "l4t-jetpack:r35", "l4t-jetpack:r36", "8 GB"):
        assert needle in doc, needle


def doc_commands(doc):
    """Every `detector ...` command in the doc's indented code blocks (continuations joined)."""
    cmds, buf = [], ""
    for line in doc.splitlines():
        if not line.startswith("    ") and not buf:
            continue
        buf += line.strip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        text, buf = buf.split("#")[0].strip(), ""
        try:
            words = shlex.split(text)
        except ValueError:
            continue
        if words and os.path.basename(words[0]) == "detector":
            cmds.append(words[1:])
    return cmds


def test_doc_commands_parse_with_the_cli(doc):
    from detector.cli import COMMANDS, build_parser
    from detector.models.spec_yaml import zoo_names
    cmds = doc_commands(doc)
    assert len(cmds) >= 6
    checked = 0
    for words in cmds:
        for flag in ("--model", "--weights"):
            if flag in words:
                value = words[words.index(flag) + 1]
                assert value in zoo_names() or re.search(r"\.(safetensors|weights)$", value), words
        if words[0] not in {add.__name__[len("add_"):] for add, _ in COMMANDS}:
            continue                       # a command another branch adds (e.g. bench)
        build_parser().parse_args(words)
        checked += 1
    assert checked >= 3
