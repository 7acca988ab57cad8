"""Published weights by name: the table, downloads from a real HTTP server on 127.0.0.1
(progress, resume after a cut, refusal of wrong files with nothing cached), the mirror
variable, ``random:`` names, and the one-line errors of the command line. Nothing here
reaches past 127.0.0.1."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, cli_env, run_cli
from detector.engine.model_file import read_model
from detector.engine.published import (darknet_file, darknet_spec, fastdsc_model,
                                       fastdsc_path, float_count_problem)
from detector.errors import UserError
from detector.io.darknet_weights import DarknetHeader, expected_floats, weights_bytes
from detector.io.download import MIRROR_ENV, DownloadError, Expected, download, source_urls
from detector.io.zoo import (DARKNET_FILES, FASTDSC_MODELS, FILES_DIR, FastDSCModel, Recipe,
                             published_names)
from detector.models.params import conv_params, init_params
from detector.models.spec import FastDSC
from detector.models.spec_yaml import SPEC_DIR, zoo_names
from weights_server import WeightsServer, dead_url

TINY = DARKNET_FILES["yolov2-tiny-voc"]


@pytest.fixture(scope="module")
def tiny_bytes():
    """yolov2-tiny-voc.weights as our writer makes it: random weights, darknet's 16-byte
    header (version 0.1), so exactly the size of the published file."""
    spec = darknet_spec(TINY)
    return weights_bytes(spec, init_params(spec, 1), DarknetHeader(0, 1, 0))


@pytest.fixture
def server():
    with WeightsServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FASTDSC_YOLO_CACHE", str(path))
    return path


# ---- the table ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DARKNET_FILES))
def test_each_file_holds_the_float_count_of_its_cfg(name):
    entry = DARKNET_FILES[name]
    spec = darknet_spec(entry)
    if entry.backbone:
        total, ends = 0, {}
        for c in conv_params(spec):
            total += (4 if c.bn else 1) * c.cout + int(np.prod(c.weight_shape))
            ends[c.layer] = total
        assert ends[entry.layers - 1] == entry.floats
    else:
        assert expected_floats(spec) == entry.floats
    if entry.size is not None:             # darknet headers are 16 (v0.1) or 20 bytes (v0.2)
        assert entry.size - 4 * entry.floats in (16, 20)
    assert entry.urls and all(u.startswith("https://pjreddie.com/") for u in entry.urls)
    if entry.names:
        assert len(open(entry.names_path).read().split("\n")[:-1]) == spec.classes
    for digest in (entry.sha256, entry.sha512):
        assert digest is None or all(ch in "0123456789abcdef" for ch in digest)


def test_every_zoo_spec_is_published_and_fastdsc_models_have_a_base():
    assert set(zoo_names()) <= set(published_names())
    assert all(m.base in DARKNET_FILES for m in FASTDSC_MODELS.values())
    assert {"yolov2.cfg", "yolov2-tiny.cfg", "coco.names"} <= set(os.listdir(FILES_DIR))


# ---- downloads ---------------------------------------------------------------------------

def test_download_by_name_with_progress_then_from_the_cache(server, cache, tiny_bytes,
                                                            monkeypatch, capfd):
    server.files.files[TINY.filename] = tiny_bytes
    monkeypatch.setenv(MIRROR_ENV, server.url)
    path = darknet_file("yolov2-tiny-voc")
    assert path == str(cache / "weights" / TINY.filename)
    assert open(path, "rb").read() == tiny_bytes
    assert not os.path.exists(path + ".part")
    err = capfd.readouterr().err
    assert f"downloading {server.url}{TINY.filename} -> {path}" in err
    assert TINY.filename in err and "60.5M" in err           # the progress bar
    model = read_model("yolov2-tiny-voc")                   # verified once: no new request
    assert server.files.names_requested() == [TINY.filename]
    assert model.spec.name == "yolov2-tiny-voc" and model.names[0] == "aeroplane"
    np.testing.assert_array_equal(model.state["layers.0.conv.weight"],
                                  init_params(model.spec, 1)["layers.0.conv.weight"])


def test_resume_after_the_server_cuts_the_connection(server, cache, tiny_bytes, monkeypatch):
    server.files.files[TINY.filename] = tiny_bytes
    server.files.cut[TINY.filename] = [10_000_000, 7]        # two cut responses, then whole
    monkeypatch.setenv(MIRROR_ENV, server.url)
    path = darknet_file("yolov2-tiny-voc", progress=False)
    assert open(path, "rb").read() == tiny_bytes
    assert server.files.requests == [(TINY.filename, None),
                                     (TINY.filename, "bytes=10000000-"),
                                     (TINY.filename, "bytes=10000007-")]


def test_resume_a_part_an_earlier_run_left(server, cache, tiny_bytes, monkeypatch):
    server.files.files[TINY.filename] = tiny_bytes
    monkeypatch.setenv(MIRROR_ENV, server.url)
    (cache / "weights").mkdir(parents=True)
    (cache / "weights" / (TINY.filename + ".part")).write_bytes(tiny_bytes[:12345])
    path = darknet_file("yolov2-tiny-voc", progress=False)
    assert open(path, "rb").read() == tiny_bytes
    assert server.files.requests == [(TINY.filename, "bytes=12345-")]


def test_a_resumed_part_of_another_file_is_downloaded_anew(server, tmp_path):
    data = os.urandom(300_000)
    server.files.files["f.bin"] = data
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"x" * 1000)      # not the start of this file
    digest = hashlib.sha256(data).hexdigest()
    download([server.url + "f.bin"], str(dest), Expected(size=len(data), sha256=digest), False)
    assert dest.read_bytes() == data
    assert [r for _, r in server.files.requests] == ["bytes=1000-", None]


@pytest.mark.parametrize("wrong", ["size", "sha256", "sha512", "floats"])
def test_a_wrong_file_is_refused_and_nothing_is_cached(server, tmp_path, wrong):
    data = os.urandom(200_000)
    server.files.files["f.bin"] = data
    dest = tmp_path / "f.bin"
    expected = {"size": Expected(size=len(data) + 4),
                "sha256": Expected(size=len(data), sha256=hashlib.sha256(b"other").hexdigest()),
                "sha512": Expected(sha512=hashlib.sha512(b"other").hexdigest()),
                "floats": Expected(check=lambda p: float_count_problem(p, TINY))}[wrong]
    with pytest.raises(DownloadError) as e:
        download([server.url + "f.bin"], str(dest), expected, False)
    assert server.url + "f.bin" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["f.bin.lock"]   # no file, no .part


def test_a_file_put_in_the_cache_by_hand_is_verified(server, cache, tiny_bytes, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, server.url)
    (cache / "weights").mkdir(parents=True)
    (cache / "weights" / TINY.filename).write_bytes(tiny_bytes)
    assert darknet_file("yolov2-tiny-voc") and server.files.requests == []
    (cache / "weights" / TINY.filename).write_bytes(tiny_bytes[:-4])
    with pytest.raises(UserError, match="63471552 bytes, expected 63471556"):
        darknet_file("yolov2-tiny-voc")


def test_two_processes_wanting_the_file_download_it_once(server, tmp_path):
    """The per-file lock (one open file description each, as two processes have)."""
    data = os.urandom(2_000_000)
    server.files.files["f.bin"] = data
    dest, results = str(tmp_path / "f.bin"), []
    expected = Expected(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    workers = [threading.Thread(target=lambda: results.append(
        download([server.url + "f.bin"], dest, expected, False))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == [dest, dest] and server.files.names_requested() == ["f.bin"]


def test_the_mirror_replaces_the_published_urls(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert source_urls("a.weights", ("https://x/a.weights",)) == ("https://x/a.weights",)
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:8000/files")
    assert source_urls("a.weights", ("https://x/a.weights",)) == \
        ("http://127.0.0.1:8000/files/a.weights",)


def test_the_backbone_reads_for_training_only(server, cache, monkeypatch):
    """darknet19_448.conv.23 as our writer cuts it from a yolov2-voc file: the first 23
    layers. (Its published SHA-512 is of darknet's file, so the table entry is used without
    it here.)"""
    entry = DARKNET_FILES["darknet19_448.conv.23"]
    monkeypatch.setitem(DARKNET_FILES, entry.name, dataclasses.replace(entry, sha512=None))
    spec = darknet_spec(entry)
    full = weights_bytes(spec, init_params(spec, 2), DarknetHeader(0, 1, 0))
    server.files.files[entry.filename] = full[:16 + 4 * entry.floats]
    monkeypatch.setenv(MIRROR_ENV, server.url)
    with pytest.raises(UserError, match="backbone"):
        read_model(entry.name)
    model = read_model(entry.name, backbone_ok=True, progress=False)
    layers = {int(k.split(".")[1]) for k in model.state}
    assert max(layers) == 22 and "layers.22.conv.weight" in model.state
    assert "layers.24.conv.weight" not in model.state


# ---- names -------------------------------------------------------------------------------

def test_random_weights_only_when_asked(tmp_path):
    model = read_model("random:yolov2-tiny-voc-fastdsc", seed=3)
    assert model.source == "random:yolov2-tiny-voc-fastdsc" and model.spec.size == 416
    spec = tmp_path / "spec.yaml"
    spec.write_text(open(os.path.join(SPEC_DIR, "yolov2-tiny-voc.yaml")).read())
    assert read_model(f"random:{spec}").spec.name == "yolov2-tiny-voc"
    with pytest.raises(UserError, match="random:"):
        read_model(str(spec))
    with pytest.raises(UserError, match="unknown model 'nope'"):
        read_model("random:nope")


# ---- the command line --------------------------------------------------------------------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "frame.jpg"
    cv2.imwrite(str(p), np.full((120, 160, 3), 128, np.uint8))
    return p


def test_cli_detect_downloads_a_published_model_once(server, tmp_path, tiny_bytes, image):
    server.files.files[TINY.filename] = tiny_bytes
    env = cli_env(FASTDSC_YOLO_CACHE=str(tmp_path / "cache"), **{MIRROR_ENV: server.url})
    args = ("detect", image, "--weights", "yolov2-tiny-voc", "--img-size", 96, "--backend", "ort")
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "downloading" in first.stderr and "frame.jpg" in first.stdout
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "downloading" not in again.stderr
    assert server.files.names_requested() == [TINY.filename]


@pytest.mark.torch
def test_cli_convert_a_published_model_by_name(server, tmp_path, tiny_bytes):
    server.files.files[TINY.filename] = tiny_bytes
    env = cli_env(FASTDSC_YOLO_CACHE=str(tmp_path / "cache"), **{MIRROR_ENV: server.url})
    out = tmp_path / "nd.safetensors"
    proc = run_cli("convert", "--weights", "yolov2-tiny-voc", "--method", "nd", "--terms", "3",
                   "--img-size", "64", "--latency-runs", "0", "--quiet", "--out", out, env=env)
    assert proc.returncode == 0, proc.stderr
    assert read_model(str(out)).names[0] == "aeroplane"


def test_cli_server_gone_is_one_line_and_exit_2(tmp_path, image):
    url = dead_url()
    env = cli_env(FASTDSC_YOLO_CACHE=str(tmp_path / "cache"), **{MIRROR_ENV: url})
    proc = run_cli("detect", image, "--weights", "yolov2-tiny-voc", env=env)
    assert_user_error(proc, url + TINY.filename, str(tmp_path / "cache" / "weights" /
                                                     TINY.filename), MIRROR_ENV)
    assert not (tmp_path / "cache" / "weights" / TINY.filename).exists()


def test_cli_bare_name_offline_names_the_published_url(tmp_path, image):
    """No mirror and no network (a proxy on 127.0.0.1 that refuses): the message names
    darknet's URL and where to put the file."""
    proxy = dead_url()
    env = cli_env(FASTDSC_YOLO_CACHE=str(tmp_path / "cache"), https_proxy=proxy,
                  HTTPS_PROXY=proxy, http_proxy=proxy, HTTP_PROXY=proxy, no_proxy="",
                  NO_PROXY="")
    env.pop(MIRROR_ENV)
    for cmd in (("detect", image, "--weights", "yolov2-voc-fastdsc"),
                ("export", "--weights", "yolov2-tiny-voc", "--format", "onnx", "--out",
                 tmp_path / "m.onnx")):
        proc = run_cli(*cmd, env=env)
        assert_user_error(proc, "https://pjreddie.com/media/files/",
                          str(tmp_path / "cache" / "weights"))


# ---- FastDSC models built by a recipe ----------------------------------------------------

def _small_recipe(**options):
    """A quick recipe for the published tiny model: DD with 2 terms (DD's solves grow with
    the terms) at a small size on few frames. The default recipe's own run is the first-use
    figure in docs/performance.md."""
    opts = {"method": "dd", "terms": 2, "img_size": 96, "calib_images": 8}
    opts.update(options)
    return FastDSCModel("yolov2-tiny-voc-fastdsc", "yolov2-tiny-voc", Recipe(opts))


@pytest.mark.slow
@pytest.mark.torch
def test_a_fastdsc_model_is_built_once_and_cached_under_its_recipe(server, cache, tiny_bytes,
                                                                   monkeypatch, capfd):
    server.files.files[TINY.filename] = tiny_bytes
    monkeypatch.setenv(MIRROR_ENV, server.url)
    model = _small_recipe()
    path = fastdsc_model(model)
    assert os.path.dirname(path) == str(cache / "models")
    assert os.path.basename(path).startswith("yolov2-tiny-voc-fastdsc-")
    err = capfd.readouterr().err
    assert "converting yolov2-tiny-voc" in err and "DD fit" in err     # the child's progress
    loaded = read_model(path)
    assert any(isinstance(layer, FastDSC) for layer in loaded.spec.layers)
    assert loaded.names[0] == "aeroplane"
    assert os.path.isfile(path[:-len(".safetensors")] + ".json")       # the recipe's report
    mtime = os.path.getmtime(path)
    assert fastdsc_model(model) == path and os.path.getmtime(path) == mtime
    other = fastdsc_path(_small_recipe(terms=1))              # a new recipe: a new file
    assert other != path and not os.path.exists(other)
    assert server.files.names_requested() == [TINY.filename]
    assert not [f for f in os.listdir(cache / "models") if ".part" in f]


@pytest.mark.torch
def test_a_failed_build_is_one_error_and_caches_nothing(server, cache, tiny_bytes, monkeypatch,
                                                        tmp_path):
    server.files.files[TINY.filename] = tiny_bytes
    monkeypatch.setenv(MIRROR_ENV, server.url)
    model = _small_recipe()
    model = FastDSCModel(model.name, model.base, Recipe(model.recipe.options,
                                                        calib=str(tmp_path / "nothing")))
    with pytest.raises(UserError) as e:
        fastdsc_model(model, progress=False)
    msg = str(e.value)
    assert "building yolov2-tiny-voc-fastdsc" in msg and "nothing" in msg
    assert "\n" not in msg
    assert not [f for f in os.listdir(cache / "models") if f.endswith(".safetensors")]
