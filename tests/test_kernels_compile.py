"""The architecture compile check (needs NVRTC + ptxas from PyPI; skipped without them)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emu_sanitized import REPO


def test_every_kernel_compiles_for_jetson_archs(tmp_path):
    from detector.engine import nvrtc
    if not nvrtc.find_nvrtc() or not nvrtc.find_ptxas() or not nvrtc.find_cuda_include():
        pytest.skip("pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12 nvidia-cuda-runtime-cu12")
    doc = tmp_path / "kernels.md"
    doc.write_text("# Kernels\n\ntext kept\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "compile_check.py"),
                           "--doc", str(doc), "--cubin-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = doc.read_text()
    assert "text kept" in text
    for arch in ("sm_53", "sm_62", "sm_72", "sm_87"):
        assert f"| {arch}" in text or f" {arch} |" in text
        assert list(tmp_path.glob(f"fastdsc-*-{arch}.cubin"))
    assert "`gemm_f16`" in text and "`dw3x3_s2_f32`" in text


def test_parse_ptxas_report():
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    from compile_check import parse_ptxas
    report = """ptxas info    : Function properties for gemm_f32
    0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 8256 bytes smem, 384 bytes cmem[0]
ptxas info    : Function properties for copy_f32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers, 372 bytes cmem[0]"""
    assert parse_ptxas(report) == {"gemm_f32": (64, 8256, 8, 12), "copy_f32": (8, 0, 0, 0)}
