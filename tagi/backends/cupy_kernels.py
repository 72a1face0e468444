"""The cupy backend's kernels: the CUDA sources, one translation unit per floating type, compiled.

Sources. ``setup.py`` installs the top-level ``kernels/`` folder as the package data
``tagi.kernels``, found with ``importlib.resources``; a source checkout or an editable install
has no such package, and the checkout's ``kernels/`` serves (``kernel_folder``).

Compilation. The files form one CUDA translation unit (``kernel_source``), compiled by NVRTC
once per floating type (``float32``: kernel names ``*_f32``; ``float64``: ``*_f64``) when first
used; CuPy caches the binaries on disk, keyed by the source text. ``kernel(name, dtype)`` is the
compiled kernel, called like CuPy's ``RawKernel``: ``kernel(grid, block, args)``.
"""
import functools
import importlib.resources
from pathlib import Path

import cupy
import numpy as np

from . import DTYPES

PACKAGE = "tagi.kernels"
CHECKOUT = Path(__file__).resolve().parents[2] / "kernels"     # kernels/ beside tagi/ in a checkout
HEADER = "tagi_gemm.cuh"                                        # a file every kernel folder holds


def kernel_folder(package=PACKAGE, checkout=CHECKOUT):
    """The folder of the CUDA sources: the package data ``package`` of an installed wheel, else
    the folder ``checkout`` (the top-level ``kernels/`` of a source checkout or an editable
    install); FileNotFoundError where neither holds them."""
    headers = []
    try:
        headers.append(importlib.resources.files(package) / HEADER)
    except ModuleNotFoundError:         # not installed from a wheel
        pass
    headers.append(Path(checkout) / HEADER)
    for header in headers:
        if header.is_file():
            return Path(header).parent
    raise FileNotFoundError(f"the CUDA kernels are neither in the package {package} nor in "
                            f"{checkout}: reinstall tagi")


KERNELS = kernel_folder()

# Gaussian-GEMM tiling, the one source of truth: handed to NVRTC as -D defines; the #ifndef
# defaults in kernels/tagi_gemm.cuh (for nvcc builds of single files) must agree (a test checks).
GEMM_TILE = {"GEMM_BM": 64, "GEMM_BN": 32, "GEMM_BK": 16,   # block tile and reduction slice
             "GEMM_TM": 4, "GEMM_TN": 4,                    # per-thread sub-tile
             "GEMM_REDUCE_OUTPUTS": 16}                     # outputs per block, split-K second pass
GEMM_BM, GEMM_BN, GEMM_BK = GEMM_TILE["GEMM_BM"], GEMM_TILE["GEMM_BN"], GEMM_TILE["GEMM_BK"]
GEMM_REDUCE_OUTPUTS = GEMM_TILE["GEMM_REDUCE_OUTPUTS"]
GEMM_THREADS = (GEMM_BM // GEMM_TILE["GEMM_TM"]) * (GEMM_BN // GEMM_TILE["GEMM_TN"])
# the kernel names' suffix of each floating type: "f32", "f64"
SUFFIX = {np.dtype(name): f"f{8 * np.dtype(name).itemsize}" for name in DTYPES}


def kernel_source(dtype):
    """The kernel files as one CUDA translation unit for ``dtype``, headers first.

    The headers' text is part of the source (their include guards make the
    ``#include`` lines no-ops), so CuPy's cache key changes whenever any file does.
    """
    lines = ["#define TAGI_DOUBLE"] if np.dtype(dtype) == np.float64 else []
    for path in sorted(KERNELS.glob("*.cuh")) + sorted(KERNELS.glob("*.cu")):
        lines += [f'#line 1 "{path.name}"', path.read_text()]
    return "\n".join(lines)


KERNEL_OPTIONS = ("-std=c++17", f"-I{KERNELS}", *(f"-D{name}={value}" for name, value in GEMM_TILE.items()))


@functools.cache
def _module(dtype):
    return cupy.RawModule(code=kernel_source(dtype), options=KERNEL_OPTIONS)


@functools.cache
def kernel(name, dtype):
    """The kernel ``name`` compiled for ``dtype`` (a numpy dtype of DTYPES): ``{name}_f32`` or
    ``{name}_f64`` of the translation unit."""
    return _module(dtype).get_function(f"{name}_{SUFFIX[dtype]}")
