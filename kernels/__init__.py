"""CUDA C sources of the FastDSC engine, installed as ``detector.kernels``.

``KERNEL_DIR`` is where the .cu/.cuh files are, in a source checkout and in an installed
wheel alike (never relative to the working directory).
"""
import os

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
