"""First use of a published FastDSC model, step by step, with nothing but 127.0.0.1:

    python scripts/bench_first_use.py yolov2-voc-fastdsc [--json OUT]

What ``detector detect SRC --weights NAME`` does the first time, timed per step in a fresh
cache: download the original darknet file (served by a real HTTP server on 127.0.0.1), verify
it (size, hash, float count), convert it by the default recipe (a child process: ND, DD on
the shipped footage, the agreement check on its held-out frames), then load the result and
detect on one frame. The served file is written by our own darknet writer with random
weights (darknet's header version of the published file, so it passes the size check); the
conversion's time does not depend on the weights' values except through the terms the
recipe chooses, which the output lists per layer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from detector.engine.published import darknet_file, darknet_spec, fastdsc_model  # noqa: E402
from detector.host import cpu_model, logical_cpus  # noqa: E402
from detector.io.darknet_weights import DarknetHeader, write_weights  # noqa: E402
from detector.io.download import MIRROR_ENV, Expected, verify  # noqa: E402
from detector.io.zoo import DARKNET_FILES, FASTDSC_MODELS  # noqa: E402
from detector.models.params import init_params  # noqa: E402
from weights_server import WeightsServer  # noqa: E402


def served_file(entry, folder: str) -> str:
    """The original written by our writer, with the header version the published size
    implies (16 bytes: v0.1, else v0.2)."""
    spec = darknet_spec(entry)
    header = DarknetHeader(0, 1, 0) if entry.size == 16 + 4 * entry.floats else DarknetHeader()
    path = os.path.join(folder, entry.filename)
    write_weights(path, spec, init_params(spec, 0), header)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=sorted(FASTDSC_MODELS))
    ap.add_argument("--json", help="write the step times as JSON")
    args = ap.parse_args()
    model = FASTDSC_MODELS[args.model]
    entry = DARKNET_FILES[model.base]
    steps = {}
    with tempfile.TemporaryDirectory(prefix="first-use-") as tmp, WeightsServer() as server:
        served = served_file(entry, tmp)
        with open(served, "rb") as f:
            server.files.files[entry.filename] = f.read()
        os.environ["FASTDSC_YOLO_CACHE"] = os.path.join(tmp, "cache")
        os.environ[MIRROR_ENV] = server.url
        t0 = time.perf_counter()
        path = darknet_file(model.base)
        steps["download_and_verify_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        assert verify(path, Expected(entry.size, entry.sha256, entry.sha512)) is None
        steps["verify_s (measured again on the cached file)"] = time.perf_counter() - t
        t = time.perf_counter()
        out = fastdsc_model(args.model)
        steps["convert_s (child process)"] = time.perf_counter() - t
        t = time.perf_counter()
        import detector
        det = detector.load(out)
        det(np.full((480, 640, 3), 127, np.uint8))
        steps["load_and_first_detection_s"] = time.perf_counter() - t
        steps["total_s"] = time.perf_counter() - t0
        with open(out[:-len(".safetensors")] + ".json") as f:
            report = json.load(f)
    result = {"model": args.model, "base": model.base, "recipe": model.recipe.options,
              "machine": f"{cpu_model()}, {logical_cpus()} CPUs", "steps": steps,
              "convert_steps_s": report.get("seconds"),
              "terms_per_layer": {str(r["index"]): r.get("terms") for r in report["layers"]
                                  if r.get("action") == "convert"},
              "network_flops_ratio": report["network"]["flops_ratio"]}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
