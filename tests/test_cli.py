"""The detector command as users run it: a real subprocess per case."""
import pickle

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, run_cli


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "frame.jpg"
    cv2.imwrite(str(p), np.full((120, 160, 3), 128, np.uint8))
    return p


def test_help_and_version():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "detect" in proc.stdout and "export" in proc.stdout
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("fastdsc-yolo ")


@pytest.mark.parametrize("size", ["100", "abc", "0", "-32", "8192"])
def test_invalid_img_size(image, size):
    proc = run_cli("detect", image, "--weights", "random:yolov2-tiny-voc-fastdsc", "--img-size", size)
    assert_user_error(proc, "--img-size", "multiple of 32")


@pytest.mark.parametrize("args,fragment", [
    (["--conf", "1.5"], "--conf"),
    (["--nms-iou", "x"], "--nms-iou"),
    (["--backend", "tensorflow"], "invalid choice"),
    (["--max-frames", "0"], "--max-frames"),
])
def test_invalid_options(image, args, fragment):
    proc = run_cli("detect", image, "--weights", "random:yolov2-tiny-voc-fastdsc", *args)
    assert_user_error(proc, fragment)


def test_missing_weights_file_and_unknown_model(image, tmp_path):
    assert_user_error(run_cli("detect", image, "--weights", tmp_path / "nope.safetensors"),
                      "nope.safetensors", "no such file")
    assert_user_error(run_cli("detect", image, "--weights", "yolov9-huge"), "yolov9-huge",
                      "zoo")
    assert_user_error(run_cli("detect", image, "--weights", tmp_path / "x.weights"),
                      "x.weights", "--cfg")


def test_pickle_or_random_bytes_posing_as_a_checkpoint(image, tmp_path):
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"os": "system"}))
    assert_user_error(run_cli("detect", image, "--weights", evil), "evil.safetensors",
                      "not a safetensors file")
    pt = tmp_path / "state.pt"
    pt.write_bytes(pickle.dumps([1, 2, 3]))
    assert_user_error(run_cli("detect", image, "--weights", pt), "state.pt", "training state")
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_user_error(run_cli("detect", image, "--weights", noise), "noise.safetensors")


def test_export_writes_every_format(tmp_path):
    for fmt, out in (("onnx", "m.onnx"), ("plan", "m.plan"), ("darknet", "m")):
        proc = run_cli("export", "--weights", "random:yolov2-tiny-voc-fastdsc", "--format", fmt,
                       "--out", tmp_path / out, "--img-size", "96")
        assert proc.returncode == 0, proc.stderr
        assert "wrote" in proc.stdout
    assert (tmp_path / "m.cfg").is_file() and (tmp_path / "m.weights").is_file()
    assert (tmp_path / "m.onnx").stat().st_size > 1_000_000
