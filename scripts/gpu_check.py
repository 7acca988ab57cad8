#!/usr/bin/env python3
"""The CUDA backend on a real GPU, in one prepared run (scripts/gpu_check.sh calls this).

    scripts/gpu_check.sh [--out DIR] [--wheels DIR] [--budget SECONDS] [--dry-run]
    scripts/gpu_check.sh --update-docs DIR/gpu_check.md     # fill docs/kernels.md from a run

On any Linux machine with an NVIDIA driver, from a checkout of the project, with no internet:

1. environment: GPU, driver, CUDA toolkit, Python, PyTorch, compute-sanitizer, TensorRT;
2. install: pycuda and the project's missing dependencies from the wheels in ``--wheels``
   (``scripts/gpu_wheels.sh`` prepares them here: a pycuda wheel built for the device's Python,
   its sdist as the fallback, pure-Python dependencies) into a private folder; the project
   runs from the checkout;
3. ``pytest -m cuda``: every kernel on the GPU against the same float64 references and random
   cases as the emulator (tests/test_kernels_ops.py), whole networks GPU vs emulator, the
   pycuda layer (context release, page-locked staging, device preprocess and decode);
4. the kernel tests under ``compute-sanitizer --tool memcheck`` and, for the kernels that use
   shared memory (GEMM, depthwise), ``--tool racecheck``;
5. ``detector bench`` of the four zoo models at 416 px: our kernels in fp32 and fp16 (with
   per-layer times) against PyTorch/cuDNN (and TensorRT where present) on the same GPU, as
   ratios from interleaved rounds.

Everything lands in ``--out`` (at most 8 files: the device tool brings back no more):
``gpu_check.json`` (all results), ``gpu_check.md`` (the section for docs/kernels.md),
``steps.log``, ``pytest-cuda.xml``, ``memcheck.log``, ``racecheck.log``, ``bench.json``. Steps
share one time budget (default 8 minutes); a step that would not fit is skipped and says so.

``--dry-run`` checks every step that can be checked without a GPU (files, wheels present and
matching the target Python, commands on PATH, the cuda tests collect, the bench knows its
cases) and exits 1 when something the run needs is missing.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET  # noqa: N817 -- parses our own pytest's junit file
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("yolov2-voc", "yolov2-voc-fastdsc", "yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc")
BENCH_CASES = ("cuda", "cuda-fp16", "torch-cuda", "torch-cuda-fp16", "trt")
# What the device needs beyond its image (CUDA toolkit, PyTorch, numpy, OpenCV, ORT, ...).
WHEELS = ("pycuda", "pytools", "platformdirs", "mako", "siphash24", "defusedxml", "pycocotools")
SITE = "/tmp/fastdsc-gpu-site"
DEVICE_PYTHON = "cp312"        # the lent GPU machine's python3 (its image: Python 3.12)
BEGIN, END = "<!-- gpu-measured:begin -->", "<!-- gpu-measured:end -->"
MEMCHECK_K = ""                                   # every kernel test
RACECHECK_K = "(gemm or depthwise) and fp32"


@dataclass
class Context:
    out: str
    wheels: str
    python_tag: str
    deadline: float
    dry_run: bool
    env: Dict[str, str] = field(default_factory=dict)
    results: Dict[str, dict] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, title: str, text: str) -> None:
        with open(os.path.join(self.out, "steps.log"), "a", encoding="utf-8") as f:
            f.write(f"==== {title}\n{text.rstrip()}\n\n")


def sh(ctx: Context, title: str, argv: List[str], timeout: float, env=None) -> dict:
    """Run argv, log its output under ``title``; returns rc, seconds, timed_out, tail."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=REPO, env=env or ctx.env, capture_output=True, text=True,
                           timeout=max(1.0, timeout))
        rc, text, timed_out = p.returncode, p.stdout + p.stderr, False
    except subprocess.TimeoutExpired as e:
        rc, timed_out = None, True
        text = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                else (e.stdout or "")) + "\n[timed out]"
    except OSError as e:
        rc, text, timed_out = None, f"cannot run {argv[0]}: {e}", False
    secs = time.monotonic() - t0
    ctx.log(f"{title}: {' '.join(argv)} (rc {rc}, {secs:.1f} s)", text)
    return {"rc": rc, "seconds": round(secs, 1), "timed_out": timed_out,
            "tail": text.strip().splitlines()[-12:]}


def first_line(argv: List[str]) -> Optional[str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.strip() for ln in (p.stdout or p.stderr).splitlines() if ln.strip()]
    return lines[-1] if p.returncode == 0 and lines else None


# ---- wheels ----------------------------------------------------------------------------------

def wheel_tags(filename: str):
    """(dist name normalised, version, python tag, abi tag, platform tag) of a wheel file."""
    parts = os.path.basename(filename)[:-len(".whl")].split("-")
    if len(parts) < 5:
        return None
    return parts[0].lower().replace("_", "-"), parts[1], parts[-3], parts[-2], parts[-1]


def wheel_matches(filename: str, python_tag: str) -> bool:
    """A wheel that installs on CPython ``python_tag`` (cp312) on x86-64 Linux."""
    tags = wheel_tags(filename)
    if tags is None:
        return False
    _, _, py, abi, plat = tags
    pys = py.split(".")
    minor = int(python_tag[3:]) if python_tag[3:].isdigit() else 0
    py_ok = python_tag in pys or any(p in ("py3", "py2.py3") for p in pys) or (
        abi == "abi3" and any(p.startswith("cp3") and p[3:].isdigit() and int(p[3:]) <= minor
                              for p in pys))
    plat_ok = plat == "any" or "x86_64" in plat
    return py_ok and plat_ok


def valid_wheel(path: str) -> Optional[str]:
    """None when ``path`` is a readable wheel whose METADATA names it, else why not."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
            if not meta:
                return "no METADATA"
            text = z.read(meta[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile) as e:
        return f"not a wheel ({e})"
    name = re.search(r"^Name: *(.+)$", text, re.M)
    want = wheel_tags(path)[0]
    if not name or name.group(1).strip().lower().replace("_", "-") != want:
        return f"METADATA names {name.group(1).strip() if name else 'nothing'}"
    return None


def find_wheels(folder: str, python_tag: str) -> Dict[str, dict]:
    """For each needed distribution: the matching wheel, or the pycuda sdist, or why none."""
    found: Dict[str, dict] = {}
    files = sorted(glob.glob(os.path.join(folder, "*")))
    for dist in WHEELS:
        wheels = [f for f in files if f.endswith(".whl") and (wheel_tags(f) or ("",))[0] == dist]
        good = [f for f in wheels if wheel_matches(f, python_tag) and valid_wheel(f) is None]
        sdists = [f for f in files if re.match(rf"{dist}-[0-9][^/]*\.tar\.gz$", os.path.basename(f))]
        if good:
            found[dist] = {"status": "ready", "file": os.path.basename(good[-1])}
        elif dist == "pycuda" and sdists:
            found[dist] = {"status": "ready", "file": os.path.basename(sdists[-1]),
                           "note": "sdist: built on the device (about 1-2 minutes)"}
        elif wheels:
            why = [f"{os.path.basename(f)}: " + (valid_wheel(f) or f"not for {python_tag} x86_64")
                   for f in wheels]
            found[dist] = {"status": "missing", "why": "; ".join(why)}
        else:
            found[dist] = {"status": "missing", "why": f"no {dist} wheel in {folder}"}
    return found


# ---- steps -------------------------------------------------------------------------------------

NEEDED_FILES = ("kernels/all_kernels.cu", "kernels/fastdsc.cuh", "kernels/emu.h",
                "tests/test_kernels_ops.py", "tests/test_kernels_cuda.py", "tests/gpu_kernels.py",
                "detector/__main__.py")
COMMANDS = ("nvidia-smi", "nvcc", "compute-sanitizer", "trtexec")


def step_files(ctx: Context) -> dict:
    missing = [f for f in NEEDED_FILES if not os.path.isfile(os.path.join(REPO, f))]
    commands = {c: shutil.which(c) for c in COMMANDS}
    pip = first_line([sys.executable, "-m", "pip", "--version"])
    status = "ok" if not missing and pip else (
        "missing: " + ", ".join(missing + ([] if pip else ["pip"])))
    if ctx.dry_run and status == "ok":
        status = "ready"
    return {"missing_files": missing, "commands": commands, "pip": pip, "status": status,
            "note": "commands missing here are expected on a machine without a GPU; the "
                    "device image has nvidia-smi, nvcc and compute-sanitizer"}


def step_environment(ctx: Context) -> dict:
    q = "name,driver_version,memory.total,compute_cap"
    smi = first_line(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"])
    gpu = dict(zip(q.split(","), [s.strip() for s in smi.split(",")])) if smi else None
    info = {"gpu": gpu, "nvcc": first_line(["nvcc", "--version"]),
            "python": sys.version.split()[0], "platform": sys.platform,
            "compute_sanitizer": shutil.which("compute-sanitizer"),
            "trtexec": shutil.which("trtexec"),
            "commit": os.environ.get("GPU_CHECK_COMMIT") or first_line(
                ["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    probe = ("import json,importlib\nout={}\nfor m in ('torch','onnxruntime','numpy','cv2',"
             "'tensorrt'):\n  try: out[m]=importlib.import_module(m).__version__\n"
             "  except Exception: out[m]=None\ntry:\n import torch; out['torch_cuda']="
             "torch.version.cuda; out['cudnn']=torch.backends.cudnn.version()\n"
             "except Exception: pass\nprint(json.dumps(out))")
    r = sh(ctx, "versions", [sys.executable, "-c", probe], 60)
    try:
        info["packages"] = json.loads(r["tail"][-1])
    except (ValueError, IndexError):
        info["packages"] = None
    info["status"] = "ok" if gpu else "no GPU (nvidia-smi found none)"
    return info


def step_install(ctx: Context) -> dict:
    found = find_wheels(ctx.wheels, ctx.python_tag)
    missing = [d for d, v in found.items() if v["status"] != "ready"]
    res = {"wheels": found}
    if ctx.dry_run:
        res["status"] = "ready" if not missing else "missing: " + ", ".join(missing)
        return res
    files = [os.path.join(ctx.wheels, v["file"]) for v in found.values()
             if v["status"] == "ready" and v["file"].endswith(".whl")]
    os.makedirs(SITE, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", SITE]
    if files:
        res["pip"] = sh(ctx, "install wheels", pip + files, min(120, ctx.left()))
    probe = [sys.executable, "-c", "import pycuda.driver as c; c.init(); "
             "print(c.get_version(), c.get_driver_version(), c.Device(0).name())"]
    res["pycuda"] = sh(ctx, "pycuda probe", probe, 60)
    sdist = found.get("pycuda", {}).get("file", "")
    if res["pycuda"]["rc"] != 0 and sdist.endswith(".tar.gz"):
        build_env = dict(ctx.env, MAKEFLAGS=f"-j{os.cpu_count() or 4}")
        res["build"] = sh(ctx, "build pycuda", pip[:-2] + ["--no-build-isolation", "--target", SITE,
                                                           os.path.join(ctx.wheels, sdist)],
                          min(300, ctx.left() - 60), env=build_env)
        res["pycuda"] = sh(ctx, "pycuda probe", probe, 60)
    ok = res["pycuda"]["rc"] == 0
    res["status"] = "ok" if ok else "failed: pycuda does not import or sees no device"
    return res


def pytest_argv(out_xml: Optional[str], select: str = "cuda", files=("tests",), k: str = ""):
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", select,
            "-rs", *files]
    if k:
        argv += ["-k", k]
    if out_xml:
        argv += ["--junitxml", out_xml]
    return argv


def junit_results(path: str) -> Dict[str, str]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out = {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case]
        out[name] = ("failed" if "failure" in kinds or "error" in kinds else
                     "skipped" if "skipped" in kinds else "passed")
    return out


def step_pytest(ctx: Context) -> dict:
    if ctx.dry_run:
        r = sh(ctx, "collect cuda tests", [sys.executable, "-m", "pytest", "-q", "-p",
                                           "no:cacheprovider", "--collect-only", "-m", "cuda",
                                           "tests"], 120)
        m = re.search(r"(\d+)/\d+ tests collected", " ".join(r["tail"]))
        n = int(m.group(1)) if m else 0
        ok = r["rc"] == 0 and n > 0
        return {"collected": n, "status": "ready" if ok else "collection failed", "run": r}
    xml = os.path.join(ctx.out, "pytest-cuda.xml")
    r = sh(ctx, "pytest -m cuda", pytest_argv(xml), min(180, ctx.left()))
    tests = junit_results(xml)
    counts = {k: sum(1 for v in tests.values() if v == k) for k in ("passed", "failed", "skipped")}
    ok = r["rc"] == 0 and counts["passed"] > 0
    return {"run": r, "tests": tests, "counts": counts, "status": "ok" if ok else "failed"}


def sanitizer_step(tool: str, k: str, cap: float) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        exe = shutil.which("compute-sanitizer")
        if ctx.dry_run or not exe:
            return {"status": ("ready" if exe else "compute-sanitizer not on PATH (skipped)")}
        log = os.path.join(ctx.out, f"{tool}.log")
        argv = [exe, "--tool", tool, "--error-exitcode", "86", "--log-file", log,
                *pytest_argv(None, "cuda", ("tests/test_kernels_ops.py",), k)]
        r = sh(ctx, f"compute-sanitizer {tool}", argv, min(cap, ctx.left()))
        summary = ""
        try:
            with open(log, encoding="utf-8", errors="replace") as f:
                found = re.findall(r"ERROR SUMMARY: (\d+) error", f.read())
                summary = f"{sum(int(n) for n in found)} errors in {len(found)} processes"
        except OSError:
            pass
        status = ("ok" if r["rc"] == 0 else "timed out" if r["timed_out"] else
                  "errors found" if r["rc"] == 86 else "failed")
        return {"run": r, "summary": summary, "status": status}
    return run


def step_bench(ctx: Context) -> dict:
    argv = [sys.executable, "-m", "detector", "bench", "--model", *MODELS, "--img-size", "416",
            "--backends", *BENCH_CASES, "--layers", "--rounds", "3"]
    if ctx.dry_run:
        try:
            p = subprocess.run([sys.executable, "-m", "detector", "bench", "--help"], cwd=REPO,
                               env=ctx.env, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"status": f"bench --help failed: {e}"}
        ctx.log("bench --help", p.stdout + p.stderr)
        names = set(re.findall(r"[\w-]+", p.stdout))
        unknown = [c for c in BENCH_CASES if c not in names]
        return {"status": "ready" if p.returncode == 0 and not unknown else
                f"bench does not know: {', '.join(unknown) or '(bench --help failed)'}"}
    out = os.path.join(ctx.out, "bench.json")
    r = sh(ctx, "detector bench", argv + ["--json", out], min(300, ctx.left()))
    try:
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    return {"run": r, "bench": data, "status": "ok" if r["rc"] == 0 and data else "failed"}


STEPS = (("files", step_files, 0), ("environment", step_environment, 0), ("install", step_install, 60),
         ("pytest", step_pytest, 40), ("memcheck", sanitizer_step("memcheck", MEMCHECK_K, 150), 60),
         ("bench", step_bench, 60), ("racecheck", sanitizer_step("racecheck", RACECHECK_K, 120), 30))


# ---- report ------------------------------------------------------------------------------------

def bench_rows(bench: Optional[dict]) -> List[str]:
    if not bench:
        return ["(no benchmark results)"]
    rows = ["| model | case | median ms | fps | vs torch-cuda |", "|---|---|---:|---:|---:|"]
    results = bench.get("results") or bench.get("cases") or []
    base = {(r.get("model"), r.get("size")): r.get("median_ms") for r in results
            if r.get("impl") == "torch-cuda"}
    for r in results:
        ref = base.get((r.get("model"), r.get("size")))
        ms = r.get("median_ms")
        ratio = f"{ref / ms:.2f}x" if ref and ms else ""
        rows.append(f"| {r.get('model')}@{r.get('size')} | {r.get('impl')} | "
                    f"{ms:.2f} | {1000.0 / ms:.0f} | {ratio} |" if ms else
                    f"| {r.get('model')}@{r.get('size')} | {r.get('impl')} | - | - | |")
    return rows


def markdown(report: dict) -> str:
    env = report["steps"].get("environment", {})
    gpu = env.get("gpu") or {}
    lines = [f"Measured by `scripts/gpu_check.sh` on {env.get('date', '?')}, commit "
             f"{env.get('commit') or '?'}: {gpu.get('name', '?')} (compute capability "
             f"{gpu.get('compute_cap', '?')}, driver {gpu.get('driver_version', '?')}), "
             f"{env.get('nvcc') or 'nvcc ?'}, Python {env.get('python')}, packages "
             f"{json.dumps(env.get('packages'))}.", ""]
    lines.append("| step | status | seconds |")
    lines.append("|---|---|---:|")
    for name, res in report["steps"].items():
        secs = (res.get("run") or {}).get("seconds", "")
        lines.append(f"| {name} | {res.get('status')} | {secs} |")
    py = report["steps"].get("pytest", {})
    failed = [t for t, v in (py.get("tests") or {}).items() if v == "failed"]
    lines += ["", f"pytest -m cuda: {py.get('counts')}" + (
        "; failed: " + ", ".join(failed) if failed else "")]
    for tool in ("memcheck", "racecheck"):
        res = report["steps"].get(tool, {})
        lines.append(f"compute-sanitizer {tool}: {res.get('status')} {res.get('summary', '')}".rstrip())
    lines += ["", *bench_rows((report["steps"].get("bench") or {}).get("bench"))]
    return "\n".join(lines) + "\n"


def update_docs(md_path: str, doc: str) -> None:
    with open(md_path, encoding="utf-8") as f:
        section = f.read().strip()
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: {doc} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(doc, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n\n{section}\n\n{END}{tail}")
    print(f"updated {doc}")


def run(ctx: Context) -> dict:
    report = {"dry_run": ctx.dry_run, "python_tag": ctx.python_tag, "steps": {}}
    for name, fn, need in STEPS:
        if not ctx.dry_run and ctx.left() < need:
            report["steps"][name] = {"status": f"skipped: {ctx.left():.0f} s of the budget left"}
            continue
        t0 = time.monotonic()
        try:
            res = fn(ctx)
        except Exception as e:      # a broken step must not lose the others' results
            res = {"status": f"error: {type(e).__name__}: {e}"}
        res.setdefault("seconds", round(time.monotonic() - t0, 1))
        report["steps"][name] = res
        print(f"[gpu_check] {name}: {res.get('status')}", file=sys.stderr, flush=True)
        if name == "install" and not ctx.dry_run and res["status"] != "ok":
            break               # nothing after this can run without pycuda
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, "gpu-check-out"))
    p.add_argument("--wheels", default=os.path.join(REPO, ".whl"))
    p.add_argument("--python-tag", default=None,
                   help="CPython tag the wheels must fit (default: this interpreter's; with "
                        f"--dry-run the GPU machine's, {DEVICE_PYTHON})")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for all steps")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--update-docs", metavar="MD", help="write MD into docs/kernels.md's section")
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "kernels.md"))
    a = p.parse_args(argv)
    if a.update_docs:
        update_docs(a.update_docs, a.doc)
        return 0
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([SITE, REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    tag = a.python_tag or (DEVICE_PYTHON if a.dry_run else
                           f"cp{sys.version_info[0]}{sys.version_info[1]}")
    ctx = Context(a.out, a.wheels, tag, time.monotonic() + a.budget, a.dry_run, env)
    report = run(ctx)
    with open(os.path.join(a.out, "gpu_check.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
    if not a.dry_run:
        with open(os.path.join(a.out, "gpu_check.md"), "w", encoding="utf-8") as f:
            f.write(markdown(report))
    bad = [n for n, r in report["steps"].items()
           if not str(r.get("status", "")).startswith(("ok", "ready", "compute-sanitizer not",
                                                        "no GPU"))]
    for n in bad:
        print(f"[gpu_check] not ready: {n}: {report['steps'][n].get('status')}", file=sys.stderr)
    print(f"[gpu_check] wrote {a.out}/gpu_check.json", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
