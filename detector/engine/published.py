"""Published models by name, kept in the user cache: darknet's own files, downloaded and
verified once (``<cache>/weights/``), and their FastDSC conversions, built once by the
default recipe (``<cache>/models/<name>-<key>.safetensors``; the key covers the original
file, the recipe and the calibration footage, so a new recipe builds a new file).

A conversion is a command, above this layer, so the build runs ``detector.convert`` in a
child process (which also hands its memory back when it ends: DD on yolov2-voc peaks near
6 GB). Its progress goes to stderr; a failure becomes one :class:`UserError`.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from typing import List, Optional, Tuple, Union

import numpy as np

from ..errors import UserError
from ..host import cache_dir, cache_key
from ..io.checkpoint import read_metadata
from ..io.darknet_cfg import spec_from_cfg
from ..io.darknet_weights import DarknetHeader
from ..io.download import Expected, ensure_file, file_lock, source_urls
from ..io.zoo import DARKNET_FILES, FASTDSC_MODELS, FOOTAGE_DIR, DarknetFile, FastDSCModel
from ..models.spec import ModelSpec
from ..models.spec_yaml import load_spec

BUILD_FORMAT = 1             # bump when the build itself changes what it writes
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_BUILD = r"""
import json, sys
from detector.errors import UserError
from detector.convert import ConvertOptions, convert
try:
    convert(ConvertOptions(**json.loads(sys.argv[1])))
except (UserError, MemoryError) as e:
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(" ".join((str(e) or "out of memory").split()))
    sys.exit(2)
"""


def darknet_spec(entry: DarknetFile) -> ModelSpec:
    """The network of a published darknet file; darknet trained it, so its frames are
    resized as darknet resizes them (as for any darknet cfg)."""
    if entry.cfg_path:
        return spec_from_cfg(entry.cfg_path)
    return load_spec(entry.cfg).replace(resize="darknet")


def darknet_file(name: str, progress: bool = True) -> str:
    """The path of the published darknet file ``name``, downloaded and verified on first use."""
    entry = DARKNET_FILES[name]
    expected = Expected(size=entry.size, sha256=entry.sha256, sha512=entry.sha512,
                        check=lambda path: float_count_problem(path, entry))
    return ensure_file(source_urls(entry.filename, entry.urls),
                       cache_dir("weights", entry.filename), expected, progress)


def float_count_problem(path: str, entry: DarknetFile) -> Optional[str]:
    """What is wrong with the float count of a darknet file for ``entry``, or None: after
    its header (16 or 20 bytes, by the version it states) it must hold exactly
    ``entry.floats`` float32 values."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12:
        return f"{size} bytes: no darknet header"
    major, minor, revision = (int(v) for v in np.frombuffer(head, "<i4"))
    header = DarknetHeader(major, minor, revision).nbytes
    if size != header + 4 * entry.floats:
        return (f"{size} bytes: after its {header}-byte header it should hold the "
                f"{entry.floats} floats of {entry.cfg} ({header + 4 * entry.floats} bytes)")
    return None


def fastdsc_model(name: Union[str, FastDSCModel], progress: bool = True) -> str:
    """The path of the published FastDSC model ``name`` (or of a model described as one):
    converted from its original by the recipe on first use (the original is downloaded
    first), then read from the cache."""
    model = FASTDSC_MODELS[name] if isinstance(name, str) else name
    out = fastdsc_path(model)
    if os.path.isfile(out):
        return out
    base = darknet_file(model.base, progress)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with file_lock(out + ".lock"):
        if not os.path.isfile(out):
            _build(model, base, out, progress)
    return out


def fastdsc_path(model: FastDSCModel) -> str:
    """Where the built model is cached: the key covers the original, the recipe and the
    calibration footage."""
    base = DARKNET_FILES[model.base]
    key = cache_key({"model": model.name, "format": BUILD_FORMAT,
                     "base": [base.filename, base.floats, base.size, base.sha256, base.sha512],
                     "recipe": model.recipe.options,
                     "calib": footage_manifest(calibration_footage(model))})
    return cache_dir("models", f"{model.name}-{key}.safetensors")


def calibration_footage(model: FastDSCModel) -> str:
    """The recipe's calibration footage: the shipped folder unless the recipe names one."""
    return model.recipe.calib or FOOTAGE_DIR


def footage_manifest(path: str) -> List[Tuple[str, int]]:
    """(relative path, size) of every file of the footage (a folder or one file)."""
    if os.path.isfile(path):
        return [(os.path.basename(path), os.path.getsize(path))]
    out = []
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            out.append((os.path.relpath(full, path), os.path.getsize(full)))
    return sorted(out)


def _build(model: FastDSCModel, base: str, out: str, progress: bool) -> None:
    """Run the recipe in a child process; the result is renamed into place only when the
    child succeeded and wrote a readable checkpoint."""
    calib = calibration_footage(model)
    stem = out[:-len(".safetensors")]
    tmp, report = stem + ".part.safetensors", stem + ".json"
    options = dict(model.recipe.options, weights=model.base, calib=calib, out=tmp,
                   report=report, latency_runs=0, map_eval=False, progress=progress)
    if progress:
        print(f"{model.name}: converting {model.base} ({base}) once by the default recipe "
              f"({model.recipe.describe()}; calibration footage {calib}) -> {out}",
              file=sys.stderr)
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    fd, err_path = tempfile.mkstemp(prefix=".build-error-", dir=os.path.dirname(out))
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-c", _BUILD, json.dumps(options), err_path],
                              env=env, stdout=subprocess.DEVNULL)
        with open(err_path, encoding="utf-8") as f:
            why = f.read().strip()
        if proc.returncode != 0 or not os.path.isfile(tmp):
            raise UserError(f"building {model.name} from {model.base} failed: "
                            f"{why or 'exit code %d (its output is above)' % proc.returncode}")
        read_metadata(tmp)                      # a UserError if it is not a checkpoint
        os.replace(tmp, out)
        if progress:
            print(f"{model.name}: {_summary(report)}; cached as {out}", file=sys.stderr)
    finally:
        for path in (tmp, err_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _summary(report_path: str) -> str:
    """One line from the conversion's report: the FLOP cut and the agreement with the
    original on the footage's held-out frames."""
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        ratio = report["network"]["flops_ratio"]
    except (OSError, ValueError, KeyError, TypeError):
        return "built"
    text = f"built: {ratio:.2f}x fewer network FLOPs"
    agreement = (report.get("agreement") or {}).get("agreement")
    if isinstance(agreement, (int, float)):
        text += f", agreement {agreement:.3f} with the original on held-out footage frames"
    return text
